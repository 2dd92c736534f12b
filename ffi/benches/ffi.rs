//! C ABI benchmarks. Prints one JSON object per line:
//! - `ffi.call_overhead`: nanoseconds per call of `tessera_agent_state`
//!   through the C ABI (an indirect call, as from C, with the panic boundary
//!   and the pointer checks), beside `Agent::state` called from Rust (peer
//!   `rust`);
//! - `ffi.agent_handle_rate`: frames handled per second through
//!   `tessera_agent_handle_input` / `_poll_transmit` / `_poll_event`, beside
//!   the same stream through the Rust agent (peer `rust`), the workload of
//!   `protocol.handle_rate`.
//!
//! The C functions are called through function pointers hidden from the
//! optimiser, so none is inlined into the loop: what a C program pays.

use std::hint::black_box;
use std::time::Instant as Clock;

use tessera::agent::*;
use tessera::{tessera_result, TESSERA_NOTHING, TESSERA_OK};
use tessera_core::attest::{ChainState, Ed25519Signer};
use tessera_core::testkit::{bench_config, decline_stream, handshake_frames};
use tessera_core::{Agent, Instant};

const SEED: [u8; 32] = [1; 32];

fn rust_agent() -> Agent<Ed25519Signer> {
    let signer = Ed25519Signer::from_seed(&SEED).expect("fixed seed");
    Agent::new(bench_config(), signer, ChainState::default()).expect("valid config")
}

fn ready_rust_agent(now: Instant) -> Agent<Ed25519Signer> {
    let mut a = rust_agent();
    a.connect(now).expect("fresh agent");
    let mut sink = [0u8; 4096];
    for f in handshake_frames() {
        a.handle_input(now, &f).expect("handshake frame");
        while a.poll_transmit(now, &mut sink).is_some() {}
        while a.poll_event().is_some() {}
    }
    a
}

/// The same agent, made and driven through the C ABI.
fn ready_c_agent(now: u64) -> *mut tessera_agent {
    let mut config = std::mem::MaybeUninit::<tessera_agent_config>::uninit();
    let mut signer = std::ptr::null_mut();
    let mut agent = std::ptr::null_mut();
    // SAFETY: valid pointers to writable memory of the right types.
    unsafe {
        assert_eq!(
            tessera_agent_config_default(config.as_mut_ptr()),
            TESSERA_OK
        );
        let mut config = config.assume_init();
        config.device.device_local_bytes = 1 << 30;
        config.policy.price_base = 1000;
        assert_eq!(
            tessera_signer_from_seed(SEED.as_ptr(), &mut signer),
            TESSERA_OK
        );
        let r = tessera_agent_new(
            &config,
            signer,
            std::ptr::null(),
            std::ptr::null_mut(),
            0,
            &mut agent,
        );
        assert_eq!(r, TESSERA_OK);
        assert_eq!(tessera_agent_connect(agent, now), TESSERA_OK);
    }
    let mut sink = [0u8; 4096];
    let mut n = 0usize;
    let mut ev = tessera_event {
        size: std::mem::size_of::<tessera_event>(),
        ..Default::default()
    };
    for f in handshake_frames() {
        // SAFETY: a live agent and valid buffers.
        unsafe {
            assert_eq!(
                tessera_agent_handle_input(agent, now, f.as_ptr(), f.len(), &mut n),
                TESSERA_OK
            );
            while tessera_agent_poll_transmit(agent, now, sink.as_mut_ptr(), sink.len(), &mut n)
                == TESSERA_OK
            {}
            while tessera_agent_poll_event(agent, &mut ev) == TESSERA_OK {}
        }
    }
    agent
}

fn rust_rate(bytes: &[u8], frames: usize) -> f64 {
    let now = Instant::from_millis(1);
    let mut a = ready_rust_agent(now);
    let mut sink = [0u8; 16 * 1024];
    let start = Clock::now();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = a.handle_input(now, rest).expect("valid stream");
        rest = &rest[n..];
        while let Some(n) = a.poll_transmit(now, &mut sink) {
            black_box(&sink[..n]);
        }
        while a.poll_event().is_some() {}
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(a.stats().offers_declined as usize, frames / 2);
    frames as f64 / secs
}

type HandleInput =
    unsafe extern "C" fn(*mut tessera_agent, u64, *const u8, usize, *mut usize) -> tessera_result;
type PollTransmit =
    unsafe extern "C" fn(*mut tessera_agent, u64, *mut u8, usize, *mut usize) -> tessera_result;
type PollEvent = unsafe extern "C" fn(*mut tessera_agent, *mut tessera_event) -> tessera_result;
type State = unsafe extern "C" fn(*const tessera_agent, *mut u32) -> tessera_result;

fn c_rate(bytes: &[u8], frames: usize) -> f64 {
    let now = 1000u64;
    let agent = ready_c_agent(now);
    let handle: HandleInput = black_box(tessera_agent_handle_input);
    let transmit: PollTransmit = black_box(tessera_agent_poll_transmit);
    let event: PollEvent = black_box(tessera_agent_poll_event);
    let mut sink = [0u8; 16 * 1024];
    let mut ev = tessera_event {
        size: std::mem::size_of::<tessera_event>(),
        ..Default::default()
    };
    let start = Clock::now();
    let mut at = 0usize;
    while at < bytes.len() {
        let mut n = 0usize;
        // SAFETY: a live agent, valid buffers; the stream is valid.
        unsafe {
            let r = handle(agent, now, bytes[at..].as_ptr(), bytes.len() - at, &mut n);
            assert_eq!(r, TESSERA_OK);
            at += n;
            let mut m = 0usize;
            while transmit(agent, now, sink.as_mut_ptr(), sink.len(), &mut m) == TESSERA_OK {
                black_box(&sink[..m]);
            }
            while event(agent, &mut ev) != TESSERA_NOTHING {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut stats = tessera_stats {
        size: std::mem::size_of::<tessera_stats>(),
        ..Default::default()
    };
    // SAFETY: a live agent; freed once.
    unsafe {
        assert_eq!(tessera_agent_stats(agent, &mut stats), TESSERA_OK);
        tessera_agent_free(agent);
    }
    assert_eq!(stats.offers_declined as usize, frames / 2);
    frames as f64 / secs
}

fn call_overhead(calls: u32) -> (f64, f64) {
    let agent = ready_c_agent(1000);
    let state: State = black_box(tessera_agent_state);
    let mut s = 0u32;
    let start = Clock::now();
    for _ in 0..calls {
        // SAFETY: a live agent and a valid output.
        unsafe { black_box(state(black_box(agent), &mut s)) };
    }
    let c_ns = start.elapsed().as_nanos() as f64 / f64::from(calls);
    // SAFETY: a live agent; freed once.
    unsafe { tessera_agent_free(agent) };

    let a = ready_rust_agent(Instant::from_millis(1));
    let a = black_box(&a);
    let start = Clock::now();
    for _ in 0..calls {
        black_box(black_box(a).state());
    }
    let rust_ns = start.elapsed().as_nanos() as f64 / f64::from(calls);
    (c_ns, rust_ns)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let (mut c, mut r) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let (x, y) = call_overhead(2_000_000);
        c.push(x);
        r.push(y);
    }
    println!(
        "{{\"name\": \"ffi.call_overhead\", \"value\": {:.2}, \"unit\": \"ns/call\", \"peers\": {{\"rust\": {:.2}}}}}",
        median(c),
        median(r)
    );

    let frames = 200_000;
    let bytes = decline_stream(frames);
    let (mut c, mut r) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        c.push(c_rate(&bytes, frames));
        r.push(rust_rate(&bytes, frames));
    }
    let (c, r) = (median(c), median(r));
    println!(
        "{{\"name\": \"ffi.agent_handle_rate\", \"value\": {c:.0}, \"unit\": \"frames/s\", \"peers\": {{\"rust\": {r:.0}}}, \"ratio\": {:.3}}}",
        c / r
    );
}
