//! The agent never allocates: a whole session, driven call by call with stack
//! buffers and frames encoded beforehand, under a global allocator that counts
//! every allocation made while an agent call runs.
//!
//! Firmware without a heap links the same code, so an allocation here would
//! be a build failure or a crash there.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use tessera_core::agent::{DisconnectReason, Event};
use tessera_core::attest::{ChainState, DeviceCapabilities, Ed25519Signer, Receipt, Signer};
use tessera_core::limits::CHUNK_SIZE;
use tessera_core::testkit::JobDescription;
use tessera_core::wire::{Header, Heartbeat, JobRef, Message, MessageType, Usage, Welcome};
use tessera_core::{Agent, Config, ConnState, Duration, Instant, JobState, Policy};

/// Counts allocations made on a thread while it is inside an agent call.
struct CountingAllocator;

thread_local! {
    /// Whether this thread is inside an agent call.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Allocations this thread made inside agent calls.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    if ARMED.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Evaluates an agent call with allocation counting armed.
macro_rules! counted {
    ($call:expr) => {{
        CALLS.fetch_add(1, Ordering::Relaxed);
        ARMED.with(|a| a.set(true));
        let result = $call;
        ARMED.with(|a| a.set(false));
        result
    }};
}

/// The host side: fixed buffers, no allocation while the session runs.
struct Host {
    now: Instant,
    /// Bytes the agent sent, not yet read.
    sent: [u8; 64 * 1024],
    sent_len: usize,
    kernel: [u8; 2 * CHUNK_SIZE],
    input: [u8; 3 * CHUNK_SIZE],
    ran: bool,
    acknowledged: bool,
    disconnect: Option<DisconnectReason>,
}

impl Host {
    /// Moves every queued outgoing byte into `sent`.
    fn transmit(&mut self, agent: &mut Agent<Ed25519Signer>) {
        loop {
            let room = &mut self.sent[self.sent_len..];
            let Some(n) = counted!(agent.poll_transmit(self.now, room)) else {
                break;
            };
            self.sent_len += n;
        }
    }

    /// Handles every queued event.
    fn events(&mut self, agent: &mut Agent<Ed25519Signer>) {
        while let Some(event) = counted!(agent.poll_event()) {
            match event {
                Event::JobData {
                    job,
                    stream,
                    offset,
                    len,
                } => {
                    let target = if stream == 0 {
                        &mut self.kernel[..]
                    } else {
                        &mut self.input[..]
                    };
                    let at = offset as usize;
                    let copied = counted!(agent.read_input(job, &mut target[at..at + len]));
                    assert_eq!(copied, Ok(len));
                }
                Event::RunJob { .. } => self.ran = true,
                Event::ResultAcknowledged { .. } => self.acknowledged = true,
                Event::Disconnect { reason } => self.disconnect = Some(reason),
                _ => {}
            }
        }
    }

    /// Feeds one frame, draining the agent between calls.
    fn deliver(&mut self, agent: &mut Agent<Ed25519Signer>, frame: &[u8]) {
        let mut rest = frame;
        while !rest.is_empty() {
            let used = counted!(agent.handle_input(self.now, rest)).expect("frame accepted");
            rest = &rest[used..];
            self.transmit(agent);
            self.events(agent);
        }
    }

    /// The types of the frames sent since the last call, and the last receipt.
    fn take_sent(&mut self, kinds: &mut [u8; 64], receipt: &mut [u8; 1024]) -> usize {
        let mut at = 0;
        let mut count = 0;
        while at < self.sent_len {
            let h = Header::decode(&self.sent[at..self.sent_len]).expect("agent frame");
            let frame = &self.sent[at..at + h.frame_len()];
            if let Ok(Message::Receipt(r)) = Message::decode(frame) {
                receipt[..r.bytes.len()].copy_from_slice(r.bytes);
            }
            kinds[count] = h.kind;
            count += 1;
            at += h.frame_len();
        }
        self.sent_len = 0;
        count
    }
}

fn config() -> Config {
    let mut capabilities = DeviceCapabilities {
        device_local_bytes: 1 << 30,
        ..DeviceCapabilities::default()
    };
    let _ = capabilities.name.push_str("no-alloc device");
    Config {
        agent_version: [0, 1, 0],
        boot_id: [2; 16],
        capabilities,
        policy: Policy::default(),
        persist_results: false,
    }
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; tessera_core::limits::MAX_FRAME];
    let n = msg.encode(&mut buf).expect("fits");
    buf.truncate(n);
    buf
}

/// Connect, handshake, offer, assignment, kernel and input chunks, run,
/// outputs, finish, acknowledgement, heartbeats on the timer, drain and
/// goodbye: not one allocation inside any agent call.
#[test]
fn a_whole_session_never_allocates() {
    println!(
        "size_of::<Agent<Ed25519Signer>>() = {} bytes",
        std::mem::size_of::<Agent<Ed25519Signer>>()
    );

    // Everything that allocates happens before the session starts.
    let job = JobDescription {
        kernel: (0..(CHUNK_SIZE + 100) as u32).map(|i| i as u8).collect(),
        entry_point: "main".into(),
        grid: [8, 1, 1],
        push_constants: vec![1, 2, 3, 4],
        buffers: vec![
            (
                vec![9; 2 * CHUNK_SIZE + 7],
                2 * CHUNK_SIZE as u64 + 7,
                false,
            ),
            (Vec::new(), 2 * CHUNK_SIZE as u64 + 7, true),
        ],
        nonce: [4; 32],
        bindings: Vec::new(),
    };
    let id = 42;
    let welcome = encode(&Message::Welcome(Welcome {
        version: 1,
        challenge: [3; 32],
        heartbeat_ms: 0,
    }));
    let ready = encode(&Message::Ready);
    let offer = encode(&Message::JobOffer(job.offer(id, 1_000_000, 60_000)));
    let assign = encode(&Message::JobAssign(job.assign(id)));
    let chunks = job.input_frames(id);
    let ack = encode(&Message::ResultAck(JobRef { job: id }));
    let heartbeat = encode(&Message::Heartbeat(Heartbeat::default()));
    let signer = Ed25519Signer::from_seed(&[5; 32]).expect("seed");
    let public_key = signer.public_key();
    let mut agent = Agent::new(config(), signer, ChainState::default()).expect("config");
    let mut host = Box::new(Host {
        now: Instant::from_millis(10),
        sent: [0; 64 * 1024],
        sent_len: 0,
        kernel: [0; 2 * CHUNK_SIZE],
        input: [0; 3 * CHUNK_SIZE],
        ran: false,
        acknowledged: false,
        disconnect: None,
    });
    let mut kinds = [0u8; 64];
    let mut receipt = [0u8; 1024];
    let mut output = [0u8; 2 * CHUNK_SIZE + 7];

    // Connect and handshake.
    let now = host.now;
    counted!(agent.connect(now)).expect("connect");
    host.transmit(&mut agent);
    host.deliver(&mut agent, &welcome);
    host.deliver(&mut agent, &ready);
    assert_eq!(counted!(agent.state()), ConnState::Ready);
    let n = host.take_sent(&mut kinds, &mut receipt);
    assert_eq!(
        &kinds[..n],
        &[MessageType::Hello as u8, MessageType::Evidence as u8]
    );

    // Offer, assignment, kernel and inputs.
    host.deliver(&mut agent, &offer);
    host.deliver(&mut agent, &assign);
    for chunk in &chunks {
        host.deliver(&mut agent, chunk);
    }
    assert!(host.ran, "the job was not started");
    assert_eq!(counted!(agent.job_state(id)), Some(JobState::Running));
    assert_eq!(&host.kernel[..job.kernel.len()], &job.kernel[..]);

    // Run: every output byte is its input byte plus one.
    for (o, i) in output.iter_mut().zip(host.input.iter()) {
        *o = i.wrapping_add(1);
    }
    let mut written = 0;
    while written < output.len() {
        let now = host.now;
        let room = &mut host.sent[host.sent_len..];
        let sent =
            counted!(agent.send_output(now, id, 1, &output[written..], room)).expect("output");
        written += sent.taken;
        host.sent_len += sent.written;
        host.transmit(&mut agent);
    }
    let usage = Usage {
        gpu_time_us: 2500,
        dispatches: 1,
        ..Usage::default()
    };
    let now = host.now;
    counted!(agent.finish_job(now, id, usage)).expect("finish");
    host.transmit(&mut agent);
    host.events(&mut agent);
    let n = host.take_sent(&mut kinds, &mut receipt);
    let tail = &kinds[n - 3..n];
    assert_eq!(
        tail,
        &[
            MessageType::Completed as u8,
            MessageType::UsageReport as u8,
            MessageType::Receipt as u8
        ]
    );

    // Acknowledgement.
    host.deliver(&mut agent, &ack);
    assert!(host.acknowledged);

    // Heartbeats on the timer, the coordinator's heartbeat in between.
    for _ in 0..3 {
        let next = counted!(agent.poll_timeout()).expect("a timer");
        host.now = next;
        counted!(agent.handle_timeout(next));
        host.transmit(&mut agent);
        host.events(&mut agent);
        host.deliver(&mut agent, &heartbeat);
    }
    let n = host.take_sent(&mut kinds, &mut receipt);
    assert_eq!(
        kinds[..n]
            .iter()
            .filter(|k| **k == MessageType::Heartbeat as u8)
            .count(),
        3
    );

    // Drain: with no job left the agent says goodbye at once.
    let now = host.now + Duration::from_millis(1);
    counted!(agent.drain(now)).expect("drain");
    host.transmit(&mut agent);
    host.events(&mut agent);
    let n = host.take_sent(&mut kinds, &mut receipt);
    assert_eq!(
        &kinds[..n],
        &[MessageType::Drain as u8, MessageType::Goodbye as u8]
    );
    assert_eq!(host.disconnect, Some(DisconnectReason::Drained));
    assert_eq!(counted!(agent.state()), ConnState::Closed);

    let allocations = allocations();
    println!(
        "{} agent calls, {} allocations inside them",
        CALLS.load(Ordering::Relaxed),
        allocations
    );
    assert_eq!(allocations, 0, "the agent allocated");

    // The receipt is genuine (checked after counting stops).
    let r = Receipt::verify(&receipt[..tessera_core::attest::RECEIPT_LEN], &public_key)
        .expect("receipt verifies");
    assert_eq!(r.job, id);
    assert_eq!(r.output_len, output.len() as u64);
}

/// The counter works: an allocation made while armed is counted.
#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let v: Vec<u8> = counted!(Vec::with_capacity(16));
    drop(v);
    assert_eq!(allocations(), before + 1);
}
