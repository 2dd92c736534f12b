//! Protocol benchmarks. Prints one JSON object per line:
//! `protocol.handle_rate` (frames decoded and handled per second by the agent,
//! replies drained) beside `postcard_decode` (the same frames decoded by
//! postcard alone, the floor), and `protocol.job_rate` (whole tiny jobs through
//! the agent, each with a signed receipt, per second) beside postcard decoding
//! the same frames and Ed25519 signing alone. `ci/bench` prints
//! `protocol.agent_bytes`, the agent's size on the firmware target, from
//! `ci/footprint`.

use std::hint::black_box;
use std::time::Instant as Clock;

use tessera_core::attest::{ChainState, Ed25519Signer, Signer};
use tessera_core::limits::{HEADER_LEN, TRANSMIT_BUFFER};
use tessera_core::testkit::{
    bench_config, decline_stream, encode, handshake_frames, JobDescription,
};
use tessera_core::wire::{Header, Heartbeat, JobOffer, JobRef, Message, MessageType, Usage};
use tessera_core::{Agent, Event, Instant};

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

/// One tiny job as the coordinator sends it: its offer, assignment and
/// input chunks (a 64-byte kernel, 8 KiB in, 8 KiB back), and the
/// acknowledgement that ends it.
struct JobFrames {
    job: JobDescription,
    /// Offer, assignment and inputs of job `id`, then its acknowledgement.
    frames: Vec<(Vec<u8>, Vec<u8>)>,
}

fn job_frames(jobs: u64) -> JobFrames {
    let job = JobDescription {
        kernel: vec![0x03; 64],
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![
            ((0..8192u32).map(|i| i as u8).collect(), 8192, false),
            (Vec::new(), 8192, true),
        ],
        bindings: Vec::new(),
        nonce: [5; 32],
    };
    let frames = (1..=jobs)
        .map(|id| {
            let mut first = encode(&Message::JobOffer(job.offer(id, 1 << 40, 60_000)));
            first.extend(encode(&Message::JobAssign(job.assign(id))));
            for f in job.input_frames(id) {
                first.extend(f);
            }
            (first, encode(&Message::ResultAck(JobRef { job: id })))
        })
        .collect();
    JobFrames { job, frames }
}

/// Feeds `bytes` to the agent, reading every event (and each piece of
/// input) and draining what it sends.
fn feed(a: &mut Agent<Ed25519Signer>, now: Instant, mut rest: &[u8], sink: &mut [u8]) {
    loop {
        let n = a.handle_input(now, rest).expect("valid stream");
        rest = &rest[n..];
        while let Some(n) = a.poll_transmit(now, sink) {
            black_box(&sink[..n]);
        }
        while let Some(e) = a.poll_event() {
            if let Event::JobData { job, .. } = e {
                black_box(a.input(job));
            }
        }
        if rest.is_empty() {
            return;
        }
    }
}

/// Whole jobs through the agent per second: offer, assignment, inputs
/// (hashed and checked), outputs (hashed and framed), the receipt signed,
/// the acknowledgement; the host does nothing else.
fn job_rate(w: &JobFrames) -> f64 {
    let now = Instant::from_millis(1);
    let mut a = ready_agent(now);
    let mut sink = [0u8; TRANSMIT_BUFFER];
    let output = vec![0x5Au8; 8192];
    let usage = Usage {
        gpu_time_us: 10,
        dispatches: 1,
        ..Usage::default()
    };
    let start = Clock::now();
    for (id, (first, ack)) in (1..).zip(&w.frames) {
        feed(&mut a, now, first, &mut sink);
        let sent = a
            .send_output(now, id, 1, &output, &mut sink)
            .expect("outputs taken");
        black_box(&sink[..sent.written]);
        a.finish_job(now, id, usage).expect("receipt signed");
        feed(&mut a, now, ack, &mut sink);
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(a.stats().jobs_completed as usize, w.frames.len());
    w.frames.len() as f64 / secs
}

/// The same coordinator frames decoded by postcard (`Message::decode`),
/// in jobs per second.
fn job_decode_rate(w: &JobFrames) -> f64 {
    let start = Clock::now();
    for (first, ack) in &w.frames {
        for bytes in [first, ack] {
            let mut at = 0;
            while at < bytes.len() {
                let h = Header::decode(&bytes[at..]).expect("valid header");
                let n = h.frame_len();
                black_box(Message::decode(&bytes[at..at + n]).expect("valid frame"));
                at += n;
            }
        }
    }
    w.frames.len() as f64 / start.elapsed().as_secs_f64()
}

/// Receipt-sized Ed25519 signatures per second with the same key: the one
/// signature each job costs.
fn sign_rate(jobs: usize) -> f64 {
    let mut signer = Ed25519Signer::from_seed(&[1; 32]).expect("fixed seed");
    let message = [0x42u8; 380];
    let start = Clock::now();
    for _ in 0..jobs {
        black_box(signer.sign(black_box(&message)).expect("signed"));
    }
    jobs as f64 / start.elapsed().as_secs_f64()
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
    // The costly paths: whole jobs, each with a signed receipt.
    let w = job_frames(2_000);
    let (mut ours, mut decode, mut sign) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        ours.push(job_rate(&w));
        decode.push(job_decode_rate(&w));
        sign.push(sign_rate(w.frames.len()));
    }
    println!(
        "{{\"name\": \"protocol.job_rate\", \"value\": {:.0}, \"unit\": \"jobs/s\", \"peers\": {{\"postcard_decode\": {:.0}, \"ed25519_sign\": {:.0}}}, \"job\": \"{} B kernel, 8 KiB in, 8 KiB out\"}}",
        median(ours),
        median(decode),
        median(sign),
        w.job.kernel.len()
    );
}
