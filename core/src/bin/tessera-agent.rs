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

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use tessera_core::operator::OperatorConfig;

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
    let file = OperatorConfig::load(&config_path).map_err(|e| e.to_string())?;
    let mut runtime = file.build_runtime().map_err(|e| e.to_string())?;

    let drain = runtime.drain_handle();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, drain.flag())
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    let status_every = file.status_interval();
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
