//! `tessera-coordinator`: the reference coordinator, a TLS 1.3 server for
//! providers and requesters on one port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_coordinator::certs::{SERVER_CERT_FILE, SERVER_KEY_FILE};
use tessera_coordinator::tls::{certs_from_pem, hex, server_config, spki_sha256};
use tessera_coordinator::{Config, Coordinator};

const USAGE: &str = "\
usage: tessera-coordinator [options]
  --listen ADDR          address to listen on (default 127.0.0.1:7700)
  --certs DIR            use DIR/server.pem and DIR/server.key (from tessera-certs)
  --cert FILE            server certificate chain (PEM)
  --key FILE             server private key (PEM)
  --state-dir DIR        keep providers' receipt-chain positions across restarts
  --heartbeat-ms N       heartbeat interval asked of providers (default 5000)
  --offer-timeout-ms N   time a provider has to answer an offer (default 5000)
  --batch-receipts N     ask providers to sign up to N receipts at once (2..=256;
                         default 0, each signed alone; protocol version 2)
  --batch-delay-us N     the longest a result waits for its batch (default 2000)
  --max-connections N    connections open at once (default 1024)
  --max-connections-per-ip N
                         connections open at once from one address (default 128)
  --handshake-timeout-ms N
                         TLS handshake and first message, all of it (default 10000)
  --max-request-body BYTES
                         largest request body (default 268435456, 256 MiB)
  --max-buffered-bytes BYTES
                         bytes held for all requesters together (default 1073741824)
  --run-for SECS         exit after SECS seconds (default: run until killed)
  --status-ms N          interval of the status line (default 10000)
Logging: RUST_LOG=info (or debug); the status line is logged at info.";

struct Args {
    listen: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    heartbeat_ms: u32,
    offer_timeout_ms: u64,
    batch_receipts: u16,
    batch_delay_us: u32,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    handshake_timeout_ms: Option<u64>,
    max_request_body: Option<usize>,
    max_buffered_bytes: Option<usize>,
    run_for: Option<u64>,
    status_ms: u64,
}

fn number<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
        cert: None,
        key: None,
        state_dir: None,
        heartbeat_ms: 5000,
        offer_timeout_ms: 5000,
        batch_receipts: 0,
        batch_delay_us: 2000,
        max_connections: None,
        max_connections_per_ip: None,
        handshake_timeout_ms: None,
        max_request_body: None,
        max_buffered_bytes: None,
        run_for: None,
        status_ms: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                args.listen = v
                    .parse()
                    .map_err(|_| format!("--listen: not an address: {v}"))?
            }
            "--certs" => {
                let dir = PathBuf::from(value()?);
                args.cert = Some(dir.join(SERVER_CERT_FILE));
                args.key = Some(dir.join(SERVER_KEY_FILE));
            }
            "--cert" => args.cert = Some(PathBuf::from(value()?)),
            "--key" => args.key = Some(PathBuf::from(value()?)),
            "--state-dir" => args.state_dir = Some(PathBuf::from(value()?)),
            "--heartbeat-ms" => {
                args.heartbeat_ms = value()?
                    .parse()
                    .map_err(|_| "--heartbeat-ms: not a number")?
            }
            "--offer-timeout-ms" => {
                args.offer_timeout_ms = value()?
                    .parse()
                    .map_err(|_| "--offer-timeout-ms: not a number")?
            }
            "--batch-receipts" => {
                args.batch_receipts = number(&flag, value()?)?;
                if args.batch_receipts > 256 {
                    return Err("--batch-receipts: at most 256".into());
                }
            }
            "--batch-delay-us" => args.batch_delay_us = number(&flag, value()?)?,
            "--max-connections" => args.max_connections = Some(number(&flag, value()?)?),
            "--max-connections-per-ip" => {
                args.max_connections_per_ip = Some(number(&flag, value()?)?)
            }
            "--handshake-timeout-ms" => args.handshake_timeout_ms = Some(number(&flag, value()?)?),
            "--max-request-body" => args.max_request_body = Some(number(&flag, value()?)?),
            "--max-buffered-bytes" => args.max_buffered_bytes = Some(number(&flag, value()?)?),
            "--run-for" => {
                args.run_for = Some(value()?.parse().map_err(|_| "--run-for: not a number")?)
            }
            "--status-ms" => args.status_ms = number(&flag, value()?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// This process's open-file soft limit, from /proc/self/limits (Linux).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn run(args: Args) -> Result<(), String> {
    let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
        return Err("give --certs DIR, or --cert and --key (make them with tessera-certs)".into());
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let tls = server_config(&cert_pem, &key_pem).map_err(|e| e.to_string())?;
    let pin = certs_from_pem(&cert_pem)
        .ok()
        .and_then(|c| c.first().and_then(|c| spki_sha256(c).ok()));
    let mut config = Config::new(args.listen, Arc::new(tls));
    config.heartbeat_ms = args.heartbeat_ms;
    config.offer_timeout = Duration::from_millis(args.offer_timeout_ms);
    config.batching = tessera_core::wire::Batching {
        max_receipts: args.batch_receipts,
        max_delay_us: args.batch_delay_us,
    };
    config.state_dir = args.state_dir;
    if let Some(n) = args.max_connections {
        config.max_connections = n;
    }
    if let Some(n) = args.max_connections_per_ip {
        config.max_connections_per_ip = n;
    }
    if let Some(ms) = args.handshake_timeout_ms {
        config.handshake_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = args.max_request_body {
        config.max_request_body = n;
    }
    if let Some(n) = args.max_buffered_bytes {
        config.max_buffered_bytes = n;
    }
    if let Some(files) = open_file_limit() {
        // A socket per connection, and a few more of its own.
        if config.max_connections.saturating_add(32) as u64 > files {
            log::warn!(
                "up to {} connections are admitted but this process may open only {files} \
                 files; raise the limit (ulimit -n) or accepts will fail",
                config.max_connections
            );
        }
    }
    let coordinator = Coordinator::start(config).map_err(|e| e.to_string())?;
    println!(
        "tessera-coordinator listening on {}",
        coordinator.local_addr()
    );
    if let Some(pin) = pin {
        println!(
            "server key pin (SHA-256 of SubjectPublicKeyInfo): {}",
            hex(&pin)
        );
    }
    let started = Instant::now();
    let mut last_report = Instant::now();
    let status_every = Duration::from_millis(args.status_ms);
    let tick = Duration::from_millis(args.status_ms.clamp(1, 200));
    loop {
        std::thread::sleep(tick);
        if last_report.elapsed() >= status_every {
            last_report = Instant::now();
            let providers = coordinator.providers();
            let s = coordinator.stats();
            log::info!(
                "{} provider(s) connected of {} known; jobs {} submitted, {} delivered, {} failed; receipts {} verified, {} rejected; connections {} open, {} refused, {} out of time, {} not reading; {} bytes held for requesters",
                providers.iter().filter(|p| p.connected).count(),
                providers.len(),
                s.jobs_submitted,
                s.results_delivered,
                s.jobs_failed,
                s.receipts_verified,
                s.receipts_rejected,
                s.connections_open,
                s.connections_refused,
                s.handshakes_expired,
                s.outbox_overflows,
                coordinator.buffered_bytes()
            );
        }
        if args
            .run_for
            .is_some_and(|secs| started.elapsed().as_secs() >= secs)
        {
            break;
        }
    }
    coordinator.drain_providers();
    std::thread::sleep(Duration::from_millis(200));
    coordinator.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tessera-coordinator: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
