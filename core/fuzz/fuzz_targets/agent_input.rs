//! A handshaken agent fed arbitrary bytes in arbitrary splits, mixed with
//! well-formed coordinator messages and host calls in any order, with time
//! jumps. It must never panic (debug assertions are on), never hold more
//! than `MAX_JOBS` jobs, and only send frames that decode and receipts that
//! verify.
#![no_main]

use std::cell::Cell;
use std::rc::Rc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessera_core::agent::Event;
use tessera_core::attest::{ChainState, Ed25519Signer, Receipt, SignError, Signer};
use tessera_core::limits::{HEADER_LEN, MAX_FRAME, MAX_JOBS};
use tessera_core::testkit::JobDescription;
use tessera_core::wire::{
    Batching, BufferSpec, Cancel, ErrorMsg, FailReason, Goodbye, GoodbyeReason, Header, Heartbeat, JobRef,
    Message, ResultRefuse, Usage, Welcome,
};
use tessera_core::{Agent, Config, ConnState, Duration, Instant, Policy};

#[derive(Arbitrary, Debug)]
enum Action {
    /// The next `len` bytes of the raw stream arrive.
    Raw {
        len: u16,
    },
    Offer {
        job: u8,
        cheap: bool,
        deadline_ms: u32,
    },
    Assign {
        job: u8,
        bad: bool,
    },
    /// An offer with any sizes and times.
    AnyOffer {
        job: u8,
        est_gpu_ms: u32,
        bytes_in: u64,
        bytes_out: u64,
        deadline_ms: u32,
    },
    /// A sealed assignment (version 3 sessions), its push constants and
    /// read-back lengths any.
    SealedAssign {
        job: u8,
        kernel_sealed: bool,
        push_len: u8,
        readback_len: u64,
    },
    /// An assignment with any kernel length and buffer layout.
    AnyAssign {
        job: u8,
        kernel_len: u32,
        /// (binding, len, init_len, readback) of each buffer.
        buffers: Vec<(u32, u64, u64, bool)>,
    },
    Chunks {
        job: u8,
        corrupt: Option<u8>,
    },
    Cancel {
        job: u8,
        reason: u16,
    },
    Ack {
        job: u8,
    },
    Refuse {
        job: u8,
        reason: u16,
    },
    Heartbeat,
    CoordinatorDrain,
    Goodbye,
    PeerError {
        code: u16,
        job: u8,
    },
    Welcome {
        version: u16,
        heartbeat_ms: u32,
    },
    Ready,
    /// The coordinator asks for batched receipts (version 2 sessions).
    Batching {
        max_receipts: u8,
        max_delay_us: u16,
    },
    /// The transport takes at most `max` queued bytes.
    Transmit {
        max: u16,
    },
    Events,
    Output {
        job: u8,
        buffer: Option<u8>,
        len: u16,
    },
    Finish {
        job: u8,
    },
    /// The host ends a sealed job with its result hash.
    FinishSealed {
        job: u8,
        hash: u8,
    },
    Fail {
        job: u8,
        reason: u8,
    },
    Progress {
        job: u8,
        permille: u16,
    },
    HostDrain,
    /// The host says whether its device takes work.
    DeviceAvailable {
        available: bool,
    },
    /// The signer starts or stops refusing to sign (a busy secure element).
    Signer {
        down: bool,
    },
    Disconnected,
    Handshake,
    Wait {
        millis: u32,
    },
}

#[derive(Arbitrary, Debug)]
struct Script {
    /// No limit on transfer sizes (the policy's limits at `u64::MAX`).
    unlimited: bool,
    actions: Vec<Action>,
    raw: Vec<u8>,
}

fn describe(job: u8) -> JobDescription {
    let fill = |n: usize, salt: u8| (0..n).map(|i| (i as u8) ^ salt).collect::<Vec<u8>>();
    let (kernel, buffers) = match job % 4 {
        0 => (8, vec![(fill(100, 1), 100, false), (Vec::new(), 64, true)]),
        1 => (9000, vec![(Vec::new(), 9000, true)]),
        2 => (4, vec![(fill(20_000, 2), 20_000, false)]),
        _ => (4, vec![]),
    };
    JobDescription {
        kernel: fill(kernel, job),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: Vec::new(),
        buffers,
        nonce: [job; 32],
        // Some jobs bind their buffers with a gap, out of order.
        bindings: if job % 4 == 0 { vec![2, 0] } else { Vec::new() },
    }
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    let n = msg.encode(&mut buf).expect("fits");
    buf.truncate(n);
    buf
}

/// A signer that refuses while `down` is set.
struct FlakySigner {
    inner: Ed25519Signer,
    down: Rc<Cell<bool>>,
}

impl Signer for FlakySigner {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }

    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError> {
        if self.down.get() {
            Err(SignError::Unavailable)
        } else {
            self.inner.sign(message)
        }
    }
}

struct Fuzz {
    agent: Agent<FlakySigner>,
    public_key: [u8; 32],
    now: Instant,
    sent: Vec<u8>,
}

impl Fuzz {
    fn connected(&self) -> bool {
        matches!(
            self.agent.state(),
            ConnState::AwaitingWelcome | ConnState::AwaitingReady | ConnState::Ready
        )
    }

    /// Takes queued bytes: once at most `max` of them, or all when `max` is
    /// `None`; then checks every whole frame.
    fn transmit(&mut self, max: Option<usize>) {
        let mut out = vec![0u8; max.unwrap_or(4096).clamp(1, 4096)];
        while let Some(n) = self.agent.poll_transmit(self.now, &mut out) {
            assert!(n > 0 && n <= out.len());
            self.sent.extend_from_slice(&out[..n]);
            if max.is_some() {
                break;
            }
        }
        while self.sent.len() >= HEADER_LEN {
            let h = Header::decode(&self.sent).expect("the agent sent a bad header");
            if self.sent.len() < h.frame_len() {
                break;
            }
            let frame: Vec<u8> = self.sent.drain(..h.frame_len()).collect();
            match Message::decode(&frame).expect("the agent sent a bad frame") {
                Message::Receipt(r) => {
                    let receipt = Receipt::verify_any(r.bytes, &self.public_key);
                    assert_eq!(receipt.map(|x| x.job), Ok(r.job), "bad receipt");
                }
                Message::OutputChunk(c) => {
                    assert_eq!(c.digest, tessera_core::merkle::leaf_hash(c.data));
                }
                _ => {}
            }
        }
    }

    fn events(&mut self) {
        while let Some(e) = self.agent.poll_event() {
            if let Event::JobData { job, len, .. } = e {
                assert!(len > 0);
                assert_eq!(self.agent.input(job).map(<[u8]>::len), Some(len));
            }
        }
    }

    fn settle(&mut self) {
        self.transmit(None);
        self.events();
    }

    /// Delivers bytes, draining the agent whenever it stops taking them.
    fn deliver(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        let mut stalls = 0;
        while !rest.is_empty() && self.connected() {
            let used = match self.agent.handle_input(self.now, rest) {
                Ok(n) => n,
                Err(e) => {
                    assert!(e.consumed >= 1 && e.consumed <= rest.len());
                    e.consumed
                }
            };
            rest = &rest[used..];
            if used == 0 {
                stalls += 1;
                assert!(stalls < 3, "input stalls although the queues are drained");
                self.settle();
            } else {
                stalls = 0;
            }
            assert!(self.agent.active_jobs() <= MAX_JOBS);
        }
    }

    fn send(&mut self, msg: &Message<'_>) {
        let frame = encode(msg);
        self.deliver(&frame);
    }

    fn handshake(&mut self) {
        if self.connected() {
            self.agent.disconnected(self.now);
        }
        self.settle();
        if self.agent.connect(self.now).is_ok() {
            self.sent.clear();
            self.send(&Message::Welcome(Welcome {
                version: 3,
                challenge: [9; 32],
                heartbeat_ms: 0,
            }));
            self.send(&Message::Ready);
        }
    }
}

fn fail_reason(r: u8) -> FailReason {
    match r % 7 {
        0 => FailReason::KernelRejected,
        1 => FailReason::Timeout,
        2 => FailReason::DeadlineExceeded,
        3 => FailReason::DeviceLost,
        4 => FailReason::OutOfMemory,
        5 => FailReason::InputIntegrity,
        _ => FailReason::Host,
    }
}

fuzz_target!(|script: Script| {
    let inner = Ed25519Signer::from_seed(&[7; 32]).expect("seed");
    let public_key = inner.public_key();
    let down = Rc::new(Cell::new(false));
    let signer = FlakySigner {
        inner,
        down: down.clone(),
    };
    let mut policy = Policy {
        floor: 10,
        ..Policy::default()
    };
    if script.unlimited {
        policy.max_bytes_in = u64::MAX;
        policy.max_bytes_out = u64::MAX;
    }
    let config = Config {
        policy,
        ..Config::default()
    };
    let mut agent = Agent::new(config, signer, ChainState::default()).expect("config");
    // Sealed jobs are taken (version 3 sessions).
    agent.set_session_key([5; 32]);
    let mut f = Fuzz {
        agent,
        public_key,
        now: Instant::from_millis(1),
        sent: Vec::new(),
    };
    f.handshake();
    let mut raw = &script.raw[..];
    for action in script.actions.iter().take(256) {
        let job = |j: u8| (j % 6) as u64;
        match *action {
            Action::Raw { len } => {
                let n = (len as usize).min(raw.len());
                let (piece, rest) = raw.split_at(n);
                raw = rest;
                f.deliver(piece);
            }
            Action::Offer {
                job: j,
                cheap,
                deadline_ms,
            } => {
                let price = if cheap { 1 } else { 1_000_000 };
                let offer = describe(j).offer(job(j), price, deadline_ms % 120_000);
                f.send(&Message::JobOffer(offer));
            }
            Action::Assign { job: j, bad } => {
                let mut a = describe(j).assign(job(j));
                if bad {
                    a.kernel.len += 1;
                }
                f.send(&Message::JobAssign(a));
            }
            Action::AnyOffer {
                job: j,
                est_gpu_ms,
                bytes_in,
                bytes_out,
                deadline_ms,
            } => {
                let mut offer = describe(j).offer(job(j), u64::MAX, deadline_ms);
                offer.est_gpu_ms = est_gpu_ms;
                offer.bytes_in = bytes_in;
                offer.bytes_out = bytes_out;
                f.send(&Message::JobOffer(offer));
            }
            Action::SealedAssign {
                job: j,
                kernel_sealed,
                push_len,
                readback_len,
            } => {
                let mut a = describe(j).assign(job(j));
                a.kernel.push_constants.clear();
                for i in 0..push_len.min(128) {
                    let _ = a.kernel.push_constants.push(i);
                }
                if let Some(b) = a.buffers.iter_mut().find(|b| b.readback) {
                    b.len = readback_len;
                }
                a.sealing = Some(tessera_core::wire::Sealing {
                    enc: [1; 32],
                    requester_key: [2; 32],
                    kernel_sealed,
                    result_key: [3; 32],
                    result_key_tag: [4; 16],
                });
                f.send(&Message::JobAssign(a));
            }
            Action::AnyAssign {
                job: j,
                kernel_len,
                ref buffers,
            } => {
                let mut a = describe(j).assign(job(j));
                a.kernel.len = kernel_len;
                a.buffers.clear();
                for &(binding, len, init_len, readback) in buffers {
                    let _ = a.buffers.push(BufferSpec {
                        binding,
                        len,
                        init_len,
                        readback,
                    });
                }
                f.send(&Message::JobAssign(a));
            }
            Action::Chunks { job: j, corrupt } => {
                let mut frames = describe(j).input_frames(job(j));
                if let Some(k) = corrupt {
                    let k = k as usize % frames.len();
                    let last = frames[k].len() - 1;
                    frames[k][last] ^= 1;
                }
                for frame in frames {
                    f.deliver(&frame);
                }
            }
            Action::Cancel { job: j, reason } => f.send(&Message::Cancel(Cancel {
                job: job(j),
                reason,
            })),
            Action::Ack { job: j } => f.send(&Message::ResultAck(JobRef { job: job(j) })),
            Action::Refuse { job: j, reason } => f.send(&Message::ResultRefuse(ResultRefuse {
                job: job(j),
                reason,
            })),
            Action::Heartbeat => f.send(&Message::Heartbeat(Heartbeat::default())),
            Action::CoordinatorDrain => f.send(&Message::Drain),
            Action::Goodbye => f.send(&Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Shutdown,
            })),
            Action::PeerError { code, job: j } => {
                f.send(&Message::Error(ErrorMsg { code, job: job(j) }))
            }
            Action::Welcome {
                version,
                heartbeat_ms,
            } => f.send(&Message::Welcome(Welcome {
                version,
                challenge: [1; 32],
                heartbeat_ms,
            })),
            Action::Ready => f.send(&Message::Ready),
            Action::Batching {
                max_receipts,
                max_delay_us,
            } => f.send(&Message::Batching(Batching {
                max_receipts: u16::from(max_receipts),
                max_delay_us: u32::from(max_delay_us),
            })),
            Action::Transmit { max } => f.transmit(Some(max as usize)),
            Action::Events => f.events(),
            Action::Output {
                job: j,
                buffer,
                len,
            } => {
                let id = job(j);
                let (at_buffer, offset) = f.agent.output_cursor(id).unwrap_or((0, 0));
                let buffer = buffer.unwrap_or(at_buffer);
                let data: Vec<u8> = (0..len as u64).map(|i| (offset + i) as u8).collect();
                let now = f.now;
                let mut out = vec![0u8; tessera_core::limits::TRANSMIT_BUFFER];
                if let Ok(sent) = f.agent.send_output(now, id, buffer, &data, &mut out) {
                    assert!(sent.taken <= data.len() && sent.written <= out.len());
                }
            }
            Action::Finish { job: j } => {
                let now = f.now;
                let _ = f.agent.finish_job(now, job(j), Usage::default());
            }
            Action::FinishSealed { job: j, hash } => {
                let now = f.now;
                let _ = f
                    .agent
                    .finish_sealed_job(now, job(j), Usage::default(), [hash; 32]);
            }
            Action::Fail { job: j, reason } => {
                let now = f.now;
                let _ = f
                    .agent
                    .fail_job(now, job(j), fail_reason(reason), 0, Usage::default());
            }
            Action::Progress { job: j, permille } => {
                let now = f.now;
                let _ = f.agent.report_progress(now, job(j), permille);
            }
            Action::HostDrain => {
                let now = f.now;
                let _ = f.agent.drain(now);
            }
            Action::DeviceAvailable { available } => {
                let now = f.now;
                f.agent.set_device_available(now, available);
            }
            Action::Signer { down: d } => down.set(d),
            Action::Disconnected => {
                let now = f.now;
                f.agent.disconnected(now);
            }
            Action::Handshake => f.handshake(),
            Action::Wait { millis } => {
                f.now = f.now + Duration::from_millis(millis as u64 % 100_000);
                if f.agent.poll_timeout().is_some_and(|t| t <= f.now) {
                    let now = f.now;
                    f.agent.handle_timeout(now);
                    if f.agent.poll_timeout().is_some_and(|t| t <= now) {
                        // The timers wait while too many events are unread:
                        // once read, they run.
                        f.events();
                        f.agent.handle_timeout(now);
                    }
                    assert!(f.agent.poll_timeout().is_none_or(|t| t > now));
                }
            }
        }
        assert!(f.agent.active_jobs() <= MAX_JOBS);
    }
    f.settle();
});
