//! An in-memory coordinator and host for driving an [`Agent`] in virtual time:
//! lifecycle tests, the in-memory demo, fuzzing and benchmarks use it. Whole
//! job lifecycles run in microseconds, since time only moves when told to.
//!
//! The host here runs jobs with a CPU function given by the caller instead of
//! a GPU, so the protocol can be exercised without one.

use std::collections::{BTreeMap, VecDeque};
use std::vec::Vec;

use crate::agent::{Agent, Event};
use crate::attest::{Ed25519Signer, Signer};
use crate::host::{Followup, JobFailure, JobHost, JobOutputs};
use crate::job;
use crate::limits::{HEADER_LEN, MAX_FRAME};
use crate::time::{Duration, Instant};
use crate::wire::{
    FailReason, Header, JobAssign, JobId, JobOffer, Message, Nonce, Requirements, Usage,
};

/// A job as a requester describes it, owned; the assignment and input chunks
/// are built by [`job::Description`], as the reference coordinator builds
/// them.
#[derive(Clone, Debug)]
pub struct JobDescription {
    /// SPIR-V bytes (any bytes, length a multiple of 4, for CPU-run tests).
    pub kernel: Vec<u8>,
    /// Entry point name.
    pub entry_point: String,
    /// Workgroup counts.
    pub grid: [u32; 3],
    /// Push constants.
    pub push_constants: Vec<u8>,
    /// Buffers: initial contents (may be empty), size, and whether returned.
    pub buffers: Vec<(Vec<u8>, u64, bool)>,
    /// The binding of each buffer in descriptor set 0, in buffer order;
    /// empty: buffer `i` at binding `i`.
    pub bindings: Vec<u32>,
    /// Requester's nonce.
    pub nonce: Nonce,
}

impl JobDescription {
    /// The offer for this job with the given price ceiling and deadline.
    pub fn offer(&self, job: JobId, max_price: u64, deadline_ms: u32) -> JobOffer {
        JobOffer {
            job,
            requirements: Requirements::default(),
            est_gpu_ms: 1,
            bytes_in: self.kernel.len() as u64
                + self.buffers.iter().map(|b| b.0.len() as u64).sum::<u64>(),
            bytes_out: self.buffers.iter().filter(|b| b.2).map(|b| b.1).sum(),
            max_price,
            deadline_ms,
        }
    }

    /// The buffers as [`job::Buffer`]s, buffer `i` at `bindings[i]` (or `i`).
    fn buffers(&self) -> Vec<job::Buffer<'_>> {
        self.buffers
            .iter()
            .enumerate()
            .map(|(i, (init, len, readback))| job::Buffer {
                binding: self.bindings.get(i).copied().unwrap_or(i as u32),
                init,
                len: *len,
                readback: *readback,
            })
            .collect()
    }

    /// Runs `f` on this job as a [`job::Description`].
    fn with_description<T>(&self, f: impl FnOnce(&job::Description<'_>) -> T) -> T {
        let buffers = self.buffers();
        f(&job::Description {
            kernel: &self.kernel,
            entry_point: &self.entry_point,
            specialization: &[],
            push_constants: &self.push_constants,
            grid: self.grid,
            buffers: &buffers,
            nonce: self.nonce,
        })
    }

    /// The assignment message ([`job::Description::assign`]).
    ///
    /// Panics when a field is over the assignment's capacity: a test that
    /// describes such a job has a bug.
    pub fn assign(&self, job: JobId) -> JobAssign {
        match self.with_description(|d| d.assign(job)) {
            Ok(assign) => assign,
            Err(e) => panic!("the test job does not fit an assignment: {e}"),
        }
    }

    /// Every input chunk frame, in order (kernel first).
    pub fn input_frames(&self, job: JobId) -> Vec<Vec<u8>> {
        self.with_description(|d| {
            d.input_chunks()
                .map(|c| encode(&Message::InputChunk(c.message(job))))
                .collect()
        })
    }
}

/// Encodes a message into a new frame.
pub fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    // Messages built by the test kit always fit one frame.
    let n = msg.encode(&mut buf).unwrap_or(0);
    buf.truncate(n);
    buf
}

/// Splits a byte stream into frames.
#[derive(Default, Debug)]
pub struct FrameSplitter {
    buf: Vec<u8>,
}

impl FrameSplitter {
    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if any. A bad header yields the rest as one frame.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let len = match Header::decode(&self.buf) {
            Ok(h) => h.frame_len(),
            Err(_) => self.buf.len(),
        };
        if self.buf.len() < len {
            return None;
        }
        let rest = self.buf.split_off(len);
        Some(std::mem::replace(&mut self.buf, rest))
    }
}

/// A CPU job runner: returns the read-back buffers' contents (in order) and
/// the usage, or a failure. Buffers come zero-extended to their length.
pub type RunFn = fn(&JobAssign, &[Vec<u8>]) -> Result<(Vec<Vec<u8>>, Usage), FailReason>;

/// Any job runner (a GPU, say): assignment, kernel bytes, buffers
/// zero-extended to their length.
pub type Runner = Box<dyn FnMut(&JobAssign, &[u8], &[Vec<u8>]) -> Result<JobOutputs, JobFailure>>;

pub use crate::host::HostJob;

/// A host that runs jobs with a CPU function, through the same
/// [`JobHost`] as the network runtime: it keeps each job's data, uploads
/// outputs and keeps them until the coordinator takes the result.
pub struct Host {
    /// The jobs' host side (inputs, outputs, uploads, results to store).
    pub job_host: JobHost,
    /// Every event seen, as text, for assertions and the demo.
    pub log: Vec<String>,
    /// Jobs to run at the next `step`.
    pub to_run: VecDeque<JobId>,
    /// Whether the agent asked to close the transport.
    pub disconnect_requested: bool,
    /// The job runner.
    pub run: Runner,
    /// When false, jobs told to run are left running (to test deadlines).
    pub auto_run: bool,
    /// Result records stored on `PersistResult`, dropped when the
    /// coordinator takes the result (the outputs stay in `job_host`): what
    /// a restarted agent is given back.
    pub stored: BTreeMap<JobId, crate::agent::ResultRecord>,
}

impl Host {
    /// A host running jobs with a CPU function.
    pub fn new(run: RunFn) -> Self {
        Self::with_runner(Box::new(move |spec, _kernel, buffers| {
            run(spec, buffers)
                .map(|(outputs, usage)| JobOutputs { outputs, usage })
                .map_err(|reason| JobFailure::new(reason, 0))
        }))
    }

    /// A host running jobs with any runner.
    pub fn with_runner(run: Runner) -> Self {
        Host {
            job_host: JobHost::new(),
            log: Vec::new(),
            to_run: VecDeque::new(),
            disconnect_requested: false,
            run,
            auto_run: true,
            stored: BTreeMap::new(),
        }
    }

    /// Handles every queued agent event.
    pub fn drain_events<S: Signer>(&mut self, agent: &mut Agent<S>) {
        while let Some(event) = agent.poll_event() {
            if !matches!(event, Event::JobData { .. }) {
                self.log.push(format!("{event:?}"));
            }
            if let Event::Disconnect { .. } = event {
                self.disconnect_requested = true;
            }
            match self.job_host.on_event(agent, &event) {
                Followup::None => {}
                Followup::Run(job) => {
                    if self.auto_run {
                        self.to_run.push_back(job);
                    }
                }
                Followup::Withdraw(job) => self.to_run.retain(|j| *j != job),
                Followup::LoadOutputs(job) => {
                    // This host keeps outputs only in memory.
                    self.log
                        .push(format!("outputs of job {job} asked again but not kept"));
                }
                Followup::Forget(job) => {
                    self.stored.remove(&job);
                }
            }
        }
    }

    /// Runs queued jobs, then stores results, reports failures and uploads
    /// outputs as far as the agent takes them. Returns whether anything was
    /// done.
    /// Output frames go to `transmit`.
    pub fn work<S: Signer>(
        &mut self,
        now: Instant,
        agent: &mut Agent<S>,
        transmit: &mut crate::host::Transmit<'_>,
    ) -> bool {
        let mut did = false;
        while let Some(job) = self.to_run.pop_front() {
            let Some(mut run) = self.job_host.take_run(agent, job) else {
                continue;
            };
            // The runner sees every buffer at its full length.
            for (b, s) in run.buffers.iter_mut().zip(run.spec.buffers.iter()) {
                b.resize(s.len as usize, 0);
            }
            let result = (self.run)(&run.spec, &run.kernel, &run.buffers);
            if let Err(f) = &result {
                self.log.push(format!("job {job} failed: {f:?}"));
            }
            self.job_host.run_ended(job, result);
            did = true;
        }
        let stored = &mut self.stored;
        let mut persist = |record: &crate::agent::ResultRecord, _: &[&[u8]]| {
            stored.insert(record.job, record.clone());
            Ok(())
        };
        did |= self
            .job_host
            .work(now, agent, &mut persist, transmit)
            .progressed;
        did
    }
}

/// A CPU job runner for tests: every read-back buffer gets the bytes of input
/// buffer 0, each incremented by one (wrapping), over its length.
pub fn increment_run(
    spec: &JobAssign,
    buffers: &[Vec<u8>],
) -> Result<(Vec<Vec<u8>>, Usage), FailReason> {
    let input = buffers.first().cloned().unwrap_or_default();
    let outputs = spec
        .buffers
        .iter()
        .filter(|b| b.readback)
        .map(|b| {
            (0..b.len as usize)
                .map(|i| input.get(i).copied().unwrap_or(0).wrapping_add(1))
                .collect()
        })
        .collect();
    Ok((
        outputs,
        Usage {
            gpu_time_us: 1500,
            dispatches: 1,
            ..Usage::default()
        },
    ))
}

/// The agent, its host, and the coordinator's end of the pipe, in virtual time.
pub struct Harness<S: Signer = Ed25519Signer> {
    /// Virtual now.
    pub now: Instant,
    /// The agent under test.
    pub agent: Agent<S>,
    /// Its host.
    pub host: Host,
    /// Bytes the coordinator sent and the agent has not consumed.
    pub to_agent: VecDeque<u8>,
    /// Frames the agent sent, split.
    pub from_agent: FrameSplitter,
    /// Errors `handle_input` returned.
    pub input_errors: Vec<crate::error::InputError>,
}

impl<S: Signer> Harness<S> {
    /// A harness around `agent`, whose host runs jobs with `run`.
    pub fn new(agent: Agent<S>, run: RunFn) -> Self {
        Self::with_host(agent, Host::new(run))
    }

    /// A harness around `agent` and a host of the caller's.
    pub fn with_host(agent: Agent<S>, host: Host) -> Self {
        Harness {
            now: Instant::from_millis(1),
            agent,
            host,
            to_agent: VecDeque::new(),
            from_agent: FrameSplitter::default(),
            input_errors: Vec::new(),
        }
    }

    /// Queues a message from the coordinator.
    pub fn send(&mut self, msg: &Message<'_>) {
        self.to_agent.extend(encode(msg));
    }

    /// Queues raw bytes from the coordinator.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.to_agent.extend(bytes.iter().copied());
    }

    /// Moves bytes and events until nothing changes; returns the frames the
    /// agent sent meanwhile.
    pub fn pump(&mut self) -> Vec<Vec<u8>> {
        let mut out = [0u8; 4096];
        let mut frames = Vec::new();
        for _ in 0..100_000 {
            let mut progressed = false;
            while let Some(n) = self.agent.poll_transmit(self.now, &mut out) {
                self.from_agent.push(&out[..n]);
                progressed = true;
            }
            while let Some(f) = self.from_agent.next_frame() {
                frames.push(f);
            }
            self.host.drain_events(&mut self.agent);
            let from_agent = &mut self.from_agent;
            if self
                .host
                .work(self.now, &mut self.agent, &mut |b| from_agent.push(b))
                || self.agent.pending_transmit() > 0
            {
                progressed = true;
            }
            if !self.to_agent.is_empty() && self.agent.state() != crate::ConnState::Disconnected {
                let (a, b) = self.to_agent.as_slices();
                let slice = if a.is_empty() { b } else { a };
                let take = slice.len().min(3000);
                let piece: Vec<u8> = slice[..take].to_vec();
                match self.agent.handle_input(self.now, &piece) {
                    Ok(n) => {
                        self.to_agent.drain(..n);
                        progressed |= n > 0;
                    }
                    Err(e) => {
                        self.to_agent.drain(..e.consumed);
                        self.input_errors.push(e);
                        progressed = true;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        frames
    }

    /// Jumps virtual time to the agent's next timer (if before `limit`) and
    /// runs it; returns whether a timer ran.
    pub fn advance(&mut self, limit: Duration) -> bool {
        let until = self.now + limit;
        match self.agent.poll_timeout() {
            Some(t) if t <= until => {
                self.now = self.now.max(t);
                self.agent.handle_timeout(self.now);
                true
            }
            _ => {
                self.now = until;
                false
            }
        }
    }
}

/// Decodes a frame the agent sent (test convenience: panics on bad frames,
/// which would be an agent bug).
pub fn decode(frame: &[u8]) -> Message<'_> {
    match Message::decode(frame) {
        Ok(m) => m,
        Err(e) => panic!("agent sent an undecodable frame: {e:?}"),
    }
}

/// The protocol benchmarks' workload (`protocol.handle_rate`,
/// `ffi.agent_handle_rate`): `frames` frames, job offers that an agent
/// configured with [`bench_config`] declines on price (decode, policy, a
/// reply) alternating with heartbeats (decode only).
pub fn decline_stream(frames: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..frames {
        let msg = if i % 2 == 0 {
            Message::JobOffer(crate::wire::JobOffer {
                job: i as u64,
                requirements: crate::wire::Requirements::default(),
                est_gpu_ms: 250,
                bytes_in: 1 << 20,
                bytes_out: 1 << 20,
                max_price: 10,
                deadline_ms: 60_000,
            })
        } else {
            Message::Heartbeat(crate::wire::Heartbeat::default())
        };
        bytes.extend(encode(&msg));
    }
    bytes
}

/// The benchmarks' agent configuration: 1 GiB of device memory and a base
/// price of 1000, over the maximum price of [`decline_stream`]'s offers.
pub fn bench_config() -> crate::Config {
    crate::Config {
        capabilities: crate::attest::DeviceCapabilities {
            device_local_bytes: 1 << 30,
            ..Default::default()
        },
        policy: crate::Policy {
            price: crate::LinearPrice {
                base: 1000,
                ..Default::default()
            },
            ..crate::Policy::default()
        },
        ..crate::Config::default()
    }
}

/// A coordinator's side of a handshake, as frames: `Welcome`, then `Ready`.
pub fn handshake_frames() -> Vec<Vec<u8>> {
    [
        Message::Welcome(crate::wire::Welcome {
            version: 1,
            challenge: [3; 32],
            heartbeat_ms: 0,
        }),
        Message::Ready,
    ]
    .iter()
    .map(encode)
    .collect()
}
