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
  --run-for SECS         exit after SECS seconds (default: run until killed)
Logging: RUST_LOG=info (or debug).";

struct Args {
    listen: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    heartbeat_ms: u32,
    offer_timeout_ms: u64,
    run_for: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
        cert: None,
        key: None,
        state_dir: None,
        heartbeat_ms: 5000,
        offer_timeout_ms: 5000,
        run_for: None,
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
            "--run-for" => {
                args.run_for = Some(value()?.parse().map_err(|_| "--run-for: not a number")?)
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
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
    config.state_dir = args.state_dir;
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
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let providers = coordinator.providers();
            let s = coordinator.stats();
            log::info!(
                "{} provider(s) connected of {} known; jobs {} submitted, {} delivered, {} failed; receipts {} verified, {} rejected",
                providers.iter().filter(|p| p.connected).count(),
                providers.len(),
                s.jobs_submitted,
                s.results_delivered,
                s.jobs_failed,
                s.receipts_verified,
                s.receipts_rejected
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
