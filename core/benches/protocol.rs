//! Protocol benchmarks. Prints one JSON object per line:
//! `protocol.handle_rate` (frames decoded and handled per second by the agent,
//! replies drained) beside `postcard_decode` (the same frames decoded by
//! postcard alone, the floor). `ci/bench` prints `protocol.agent_bytes`, the
//! agent's size on the firmware target, from `ci/footprint`.

use std::hint::black_box;
use std::time::Instant as Clock;

use tessera_core::attest::{ChainState, Ed25519Signer};
use tessera_core::limits::HEADER_LEN;
use tessera_core::testkit::{bench_config, decline_stream, handshake_frames};
use tessera_core::wire::{Heartbeat, JobOffer, MessageType};
use tessera_core::Agent;
use tessera_core::Instant;

fn agent() -> Agent<Ed25519Signer> {
    let signer = Ed25519Signer::from_seed(&[1; 32]).expect("fixed seed");
    Agent::new(bench_config(), signer, ChainState::default()).expect("valid config")
}

/// A ready agent: handshake done.
fn ready_agent(now: Instant) -> Agent<Ed25519Signer> {
    let mut a = agent();
    a.connect(now).expect("fresh agent");
    let mut sink = [0u8; 4096];
    for f in handshake_frames() {
        a.handle_input(now, &f).expect("handshake frame");
        while a.poll_transmit(now, &mut sink).is_some() {}
        while a.poll_event().is_some() {}
    }
    a
}

fn handle_rate(bytes: &[u8], frames: usize) -> f64 {
    let now = Instant::from_millis(1);
    let mut a = ready_agent(now);
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

fn postcard_rate(bytes: &[u8], frames: usize) -> f64 {
    let start = Clock::now();
    let mut at = 0;
    let mut count = 0;
    while at < bytes.len() {
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        let body = &bytes[at + HEADER_LEN..at + HEADER_LEN + len];
        if bytes[at + 3] == MessageType::JobOffer as u8 {
            black_box(postcard::from_bytes::<JobOffer>(body).expect("valid offer"));
        } else {
            black_box(postcard::from_bytes::<Heartbeat>(body).expect("valid heartbeat"));
        }
        at += HEADER_LEN + len;
        count += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(count, frames);
    frames as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let frames = 200_000;
    let bytes = decline_stream(frames);
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    for _ in 0..7 {
        ours.push(handle_rate(&bytes, frames));
        peer.push(postcard_rate(&bytes, frames));
    }
    println!(
        "{{\"name\": \"protocol.handle_rate\", \"value\": {:.0}, \"unit\": \"frames/s\", \"peers\": {{\"postcard_decode\": {:.0}}}}}",
        median(ours),
        median(peer)
    );
}
