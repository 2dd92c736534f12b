//! The operator program's Prometheus metrics, in the text exposition format
//! (written by the Prometheus project's `prometheus-client`): what a
//! provider did and holds, read from a running [`Runtime`].
//!
//! | metric | type | what |
//! |---|---|---|
//! | `tessera_jobs_total{outcome}` | counter | results acknowledged: `completed`, `failed`; `refused` by the coordinator |
//! | `tessera_offers_total{answer}` | counter | offers `accepted` and `declined` |
//! | `tessera_gpu_seconds_total` | counter | GPU time metered into acknowledged results |
//! | `tessera_earnings_total` | counter | prices of acknowledged completed jobs, in the network's smallest unit |
//! | `tessera_jobs_active` | gauge | jobs held: accepted, transferring, running, or awaiting acknowledgement (the queue) |
//! | `tessera_results_held` | gauge | results (signed receipts) held until the coordinator acknowledges them |
//! | `tessera_session_state{state}` | gauge | 1 for the session's state (`disconnected`, `handshaking`, `ready`, `closed`), 0 for the others |
//! | `tessera_sessions_total` | counter | sessions established since start (reconnects are this less one) |
//! | `tessera_device_available` | gauge | 1 while the device takes work |
//! | `tessera_kernel_rejections_total{rule}` | counter | kernels refused, by the rule they broke (`crate::reasons`) |
//! | `tessera_frames_total{direction}` | counter | protocol frames `received` and `sent` |
//! | `tessera_info{version, device}` | gauge | 1, with the program's version and the device's name |

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::attest::Signer;
use crate::net::Runtime;
use crate::reasons::KernelRule;
use crate::ConnState;

type Labels = Vec<(&'static str, String)>;

fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

fn gauge(value: i64) -> Gauge {
    let g = Gauge::default();
    g.set(value);
    g
}

fn labelled(pairs: &[(&'static str, &str, u64)]) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for (name, value, n) in pairs {
        family
            .get_or_create(&vec![(*name, (*value).to_string())])
            .inc_by(*n);
    }
    family
}

/// The metrics of `runtime` now, as Prometheus text (ending in `# EOF`).
pub fn render<S: Signer>(runtime: &Runtime<S>) -> String {
    let status = runtime.status();
    let stats = runtime.agent().stats();
    let mut r = Registry::default();
    r.register(
        "tessera_jobs",
        "Results acknowledged, by outcome; refused: verified but not accepted by the coordinator",
        labelled(&[
            ("outcome", "completed", stats.jobs_completed),
            ("outcome", "failed", stats.jobs_failed),
            ("outcome", "refused", stats.results_refused),
        ]),
    );
    r.register(
        "tessera_offers",
        "Offers answered, by answer",
        labelled(&[
            ("answer", "accepted", stats.offers_accepted),
            ("answer", "declined", stats.offers_declined),
        ]),
    );
    let gpu = Counter::<f64, AtomicU64>::default();
    gpu.inc_by(stats.gpu_time_us as f64 / 1e6);
    r.register(
        "tessera_gpu_seconds",
        "GPU time metered into acknowledged results",
        gpu,
    );
    r.register(
        "tessera_earnings",
        "Prices of acknowledged completed jobs, in the network's smallest unit",
        counter(stats.earnings),
    );
    r.register(
        "tessera_jobs_active",
        "Jobs held: accepted, transferring, running or awaiting acknowledgement",
        gauge(status.active_jobs as i64),
    );
    r.register(
        "tessera_results_held",
        "Results (signed receipts) held until the coordinator acknowledges them",
        gauge(runtime.agent().results_held() as i64),
    );
    let state = match status.state {
        Some(ConnState::Ready) => "ready",
        Some(ConnState::AwaitingWelcome | ConnState::AwaitingReady) => "handshaking",
        Some(ConnState::Closed) => "closed",
        _ => "disconnected",
    };
    let states = Family::<Labels, Gauge>::default();
    for s in ["disconnected", "handshaking", "ready", "closed"] {
        states
            .get_or_create(&vec![("state", s.to_string())])
            .set(i64::from(s == state));
    }
    r.register(
        "tessera_session_state",
        "1 for the session's state, 0 for the others",
        states,
    );
    r.register(
        "tessera_sessions",
        "Sessions established since start",
        counter(status.sessions),
    );
    r.register(
        "tessera_device_available",
        "1 while the device takes work",
        gauge(i64::from(!status.device_unavailable)),
    );
    let rejections = Family::<Labels, Counter>::default();
    for (&code, &n) in runtime.kernel_rejections() {
        let rule = KernelRule::from_code(code)
            .map(|r| r.name().to_string())
            .unwrap_or_else(|| format!("rule_{code}"));
        rejections.get_or_create(&vec![("rule", rule)]).inc_by(n);
    }
    r.register(
        "tessera_kernel_rejections",
        "Kernels refused, by the rule they broke",
        rejections,
    );
    r.register(
        "tessera_frames",
        "Protocol frames, by direction",
        labelled(&[
            ("direction", "received", stats.frames_in),
            ("direction", "sent", stats.frames_out),
        ]),
    );
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("device", status.device.clone()),
    ])
    .set(1);
    r.register("tessera_info", "The program's version and its device", info);
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = encode(&mut out, &r);
    out
}
