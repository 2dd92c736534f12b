//! The host side of the agent's jobs, for every hosted (std) host: the
//! network runtime ([`crate::net::Runtime`]), the test kit and the
//! in-memory demo all drive their jobs through one [`JobHost`]. It keeps
//! each job's inputs as they arrive, hands runs out, takes what they
//! produce, stores results, reports failures and uploads outputs as far as
//! the agent takes them, and forgets what the coordinator took. Running
//! kernels, talking to the transport and storing bytes durably stay with
//! the caller.

use std::collections::{BTreeMap, VecDeque};
use std::string::String;
use std::vec::Vec;

use crate::agent::{Agent, Event, JobState, ResultRecord};
use crate::attest::Signer;
use crate::error::{Error, UsageError};
use crate::limits::TRANSMIT_BUFFER;
use crate::time::Instant;
use crate::wire::{FailReason, JobAssign, JobId, Usage};

/// The `InputIntegrity` detail of a sealed job that did not open with the
/// session key (`docs/PROTOCOL.md`, "Sealed jobs").
pub const SEALED_DID_NOT_OPEN: u32 = 11;

/// A job's kernel and input buffers, filled from `Event::JobData`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobInputs {
    /// SPIR-V bytes (stream 0).
    pub kernel: Vec<u8>,
    /// Initial contents of each buffer (stream `i + 1` is buffer `i`); a
    /// buffer without input stays empty.
    pub buffers: Vec<Vec<u8>>,
}

impl JobInputs {
    /// Stores verified bytes of `stream` at `offset`, growing the target.
    pub fn write(&mut self, stream: u8, offset: u64, data: &[u8]) {
        let target = if stream == 0 {
            &mut self.kernel
        } else {
            let i = stream as usize - 1;
            if self.buffers.len() <= i {
                self.buffers.resize(i + 1, Vec::new());
            }
            &mut self.buffers[i]
        };
        let start = offset as usize;
        let end = start + data.len();
        if target.len() < end {
            target.resize(end, 0);
        }
        target[start..end].copy_from_slice(data);
    }
}

/// Outputs of a run: one per read-back buffer, in binding order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobOutputs {
    /// Read-back buffers' contents, each exactly the buffer's length.
    pub outputs: Vec<Vec<u8>>,
    /// Metered usage (GPU time, dispatches); transfer sizes are filled in by
    /// the agent.
    pub usage: Usage,
}

/// Why a run failed, as it goes on the wire, and what it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobFailure {
    /// The reason.
    pub reason: FailReason,
    /// A reason-specific code (the kernel rejection code, say).
    pub detail: u32,
    /// Metered usage of what ran (GPU time, dispatches); transfer sizes are
    /// filled in by the agent. A [`FailReason::Timeout`] is metered to the
    /// time limit the run was given: it is signed into the receipt and the
    /// job is charged its quote ([`crate::Policy::charge_timeout`]). Other
    /// failures are charged nothing whatever they report.
    pub usage: Usage,
}

impl JobFailure {
    /// A failure with nothing metered.
    pub fn new(reason: FailReason, detail: u32) -> Self {
        JobFailure {
            reason,
            detail,
            usage: Usage::default(),
        }
    }
}

/// One job on the host's side.
#[derive(Default)]
pub struct HostJob {
    /// Kernel and input buffers as received (taken when the job runs).
    pub inputs: JobInputs,
    /// Outputs, once run (or loaded from a store); kept until the
    /// coordinator takes the result. A sealed job's are sealed.
    pub outputs: Option<Vec<Vec<u8>>>,
    /// Usage metered by the run.
    pub usage: Usage,
    /// A sealed job: the session key it was assigned under, then (once
    /// opened for its run) what sealing its outputs needs, then its result
    /// hash.
    #[cfg(feature = "e2e")]
    sealed: Sealed,
}

#[cfg(feature = "e2e")]
#[derive(Default)]
enum Sealed {
    #[default]
    No,
    Assigned(std::sync::Arc<crate::e2e::KeyPair>),
    Running(std::boxed::Box<SealedRun>),
    Done(crate::wire::Digest),
}

/// A sealed job opened for its run: what sealing its outputs needs.
#[cfg(feature = "e2e")]
struct SealedRun {
    opened: crate::e2e::OpenedJob,
    /// The assignment, as sealed.
    spec: JobAssign,
    output: std::sync::Arc<crate::e2e::OutputContext>,
    /// The output streams, made ready under a salt drawn for the run
    /// ([`SealedRun::prepare`]).
    sealer: Option<crate::e2e::OutputSealer>,
}

#[cfg(feature = "e2e")]
impl SealedRun {
    /// Makes the output streams ready (once): a salt drawn for this run,
    /// the job's output key and its streams, so that sealing the outputs
    /// after the run costs the AEAD alone.
    fn prepare(&mut self) -> Result<(), crate::e2e::SealError> {
        if self.sealer.is_none() {
            self.sealer = Some(output_sealer(&self.opened, &self.spec, &self.output)?);
        }
        Ok(())
    }

    /// Seals the run's `outputs` (zeroed whatever comes of it): the sealed
    /// streams and the result hash. The output streams are used once: a
    /// second call would draw a new salt.
    fn seal(
        &mut self,
        mut outputs: Vec<Vec<u8>>,
    ) -> Result<(Vec<Vec<u8>>, crate::wire::Digest), crate::e2e::SealError> {
        let ready = match self.sealer.take() {
            Some(ready) => Ok(ready),
            None => output_sealer(&self.opened, &self.spec, &self.output),
        };
        match ready {
            Ok(sealer) => self.opened.seal_outputs_with(&self.spec, outputs, sealer),
            Err(e) => {
                wipe_outputs(&mut outputs);
                Err(e)
            }
        }
    }
}

/// The output streams of a run of `opened`, under a salt drawn now.
#[cfg(feature = "e2e")]
fn output_sealer(
    opened: &crate::e2e::OpenedJob,
    spec: &JobAssign,
    output: &crate::e2e::OutputContext,
) -> Result<crate::e2e::OutputSealer, crate::e2e::SealError> {
    let mut salt = [0u8; crate::e2e::OUTPUT_SALT_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| crate::e2e::SealError::Random)?;
    opened.output_sealer(spec, output, &salt)
}

impl core::fmt::Debug for HostJob {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostJob")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs.as_ref().map(|o| o.len()))
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

/// What an event asks of the caller, beyond the bookkeeping [`JobHost`]
/// does itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followup {
    /// Nothing.
    None,
    /// Run the job: take it with [`JobHost::take_run`], report with
    /// [`JobHost::run_ended`].
    Run(JobId),
    /// The agent no longer holds the job: stop its run if one is going on
    /// (its result will be dropped).
    Withdraw(JobId),
    /// The agent wants the job's outputs again and the host does not hold
    /// them (a restart): load them from the store and hand them over with
    /// [`JobHost::outputs_loaded`].
    LoadOutputs(JobId),
    /// The coordinator took (or refused) the result: delete its stored record.
    Forget(JobId),
}

/// A job to run: its assignment, kernel and initial buffer contents (one
/// per buffer, each at most the buffer's length; the rest is zero). A
/// sealed job's run holds it opened: the kernel, the inputs and (in
/// `spec.kernel.push_constants`) the push constants in the clear, zeroed
/// when the run is dropped.
#[derive(Clone, Debug)]
pub struct Run {
    /// The job.
    pub job: JobId,
    /// Kernel, parameters and buffer layout.
    pub spec: JobAssign,
    /// SPIR-V bytes.
    pub kernel: Vec<u8>,
    /// Initial contents of each buffer, in buffer order.
    pub buffers: Vec<Vec<u8>>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.spec.sealing.is_some() {
            wipe(&mut self.kernel, &mut self.buffers, &mut self.spec);
        }
    }
}

/// A sealed job's buffers as the executor sees them: the sizes of the job
/// in the clear, not the sealed ones the assignment declares. A read-back
/// buffer is the plaintext its sealed output carries; a buffer that only
/// takes input and was declared just for its sealed input is that input in
/// the clear; any other keeps its length. The kernel and the executor then
/// see the buffers the requester described.
#[cfg(feature = "e2e")]
fn run_in_clear_sizes(spec: &mut JobAssign) {
    let mut first = true;
    for b in spec.buffers.iter_mut() {
        let init = crate::e2e::plain_len(b.init_len).unwrap_or(b.init_len);
        if b.readback {
            let at_front = core::mem::replace(&mut first, false);
            if let Some(p) = crate::e2e::output_plain_len(b.len, at_front) {
                b.len = p.max(init);
            }
        } else if b.init_len > 0 && b.len == b.init_len {
            b.len = init;
        }
        b.init_len = init;
    }
}

/// Zeroes outputs before they are dropped (their bytes; the lengths stay).
pub fn wipe_outputs(outputs: &mut [Vec<u8>]) {
    for o in outputs.iter_mut() {
        zero(o);
    }
}

/// Zeroes a sealed job's plaintext: its kernel, its inputs and its push
/// constants (their bytes; the lengths stay).
pub fn wipe(kernel: &mut [u8], buffers: &mut [Vec<u8>], spec: &mut JobAssign) {
    zero(kernel);
    for b in buffers.iter_mut() {
        zero(b);
    }
    zero(spec.kernel.push_constants.as_mut_slice());
}

/// Writes zeros over `bytes` in a way the compiler does not elide
/// (`zeroize`, with feature `e2e`).
fn zero(bytes: &mut [u8]) {
    #[cfg(feature = "e2e")]
    zeroize::Zeroize::zeroize(bytes);
    #[cfg(not(feature = "e2e"))]
    bytes.iter_mut().for_each(|x| *x = 0);
}

/// Stores a signed result and its outputs durably; returns once they would
/// survive a crash, or why they could not be stored.
pub type Persist<'a> = dyn FnMut(&ResultRecord, &[&[u8]]) -> Result<(), String> + 'a;

/// Where [`JobHost::upload`] sends the frames it writes: the transport, in
/// order with what `poll_transmit` gives.
pub type Transmit<'a> = dyn FnMut(&[u8]) + 'a;

/// Bytes of frames [`JobHost::upload`] writes in one turn, at most: four
/// chunks and what the agent had queued.
pub const UPLOAD_BYTES: usize = 4 * crate::limits::MAX_FRAME + crate::limits::TX_CAPACITY;

/// What one [`JobHost::work`] turn did.
#[derive(Clone, Debug, Default)]
pub struct WorkReport {
    /// Whether anything moved.
    pub progressed: bool,
    /// The last error storing a result (the result is held back and the
    /// store tried again next turn).
    pub store_error: Option<String>,
}

/// The host side of the agent's jobs (see the module documentation).
#[derive(Debug, Default)]
pub struct JobHost {
    /// Jobs the host holds.
    pub jobs: BTreeMap<JobId, HostJob>,
    /// Jobs whose outputs go to the agent next, in order.
    pub to_upload: VecDeque<JobId>,
    to_persist: VecDeque<JobId>,
    to_fail: VecDeque<(JobId, JobFailure)>,
    /// Where output frames are written (made at the first upload).
    tx: Option<Vec<u8>>,
    /// Kernels refused, by the rule they broke (the rule code: a
    /// `KernelRejected` detail's low 16 bits, `crate::reasons`).
    pub rejections: BTreeMap<u16, u64>,
    /// The current session's encryption key pair and the contexts of
    /// sealed jobs (sealed jobs).
    #[cfg(feature = "e2e")]
    session: Option<SessionContexts>,
}

/// Contexts of a session's sealed jobs kept: each requester context (by
/// its encapsulated key) opened once, each output context (by requester
/// context and requester key) set up once, the last
/// [`SessionContexts::KEPT`] of each.
#[cfg(feature = "e2e")]
struct SessionContexts {
    keys: std::sync::Arc<crate::e2e::KeyPair>,
    inputs: VecDeque<([u8; 32], std::sync::Arc<crate::e2e::Receiver>)>,
    outputs: VecDeque<(OutputKey, std::sync::Arc<crate::e2e::OutputContext>)>,
}

/// An output context's place: the requester context's encapsulated key
/// and the requester's key.
#[cfg(feature = "e2e")]
type OutputKey = ([u8; 32], [u8; 32]);

#[cfg(feature = "e2e")]
impl core::fmt::Debug for SessionContexts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionContexts")
            .field("inputs", &self.inputs.len())
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "e2e")]
impl SessionContexts {
    const KEPT: usize = 16;

    /// The requester context a job sealed in `sealing` opens with, under
    /// `keys` (the session key it was assigned under).
    fn input_for(
        &mut self,
        keys: &std::sync::Arc<crate::e2e::KeyPair>,
        device_key: &[u8; 32],
        sealing: &crate::wire::Sealing,
    ) -> Result<std::sync::Arc<crate::e2e::Receiver>, crate::e2e::SealError> {
        if !std::sync::Arc::ptr_eq(keys, &self.keys) {
            // Assigned under another session's key: nothing kept serves it.
            let receiver = crate::e2e::provider_context(keys, device_key, &sealing.enc)?;
            return Ok(std::sync::Arc::new(receiver));
        }
        if let Some((_, r)) = self.inputs.iter().find(|(e, _)| *e == sealing.enc) {
            return Ok(r.clone());
        }
        let r = std::sync::Arc::new(crate::e2e::provider_context(
            &self.keys,
            device_key,
            &sealing.enc,
        )?);
        if self.inputs.len() == Self::KEPT {
            self.inputs.pop_front();
        }
        self.inputs.push_back((sealing.enc, r.clone()));
        Ok(r)
    }

    /// The output context a job sealed in `sealing` (opened already)
    /// seals its outputs with.
    fn output_for(
        &mut self,
        device_key: &[u8; 32],
        sealing: &crate::wire::Sealing,
    ) -> Result<std::sync::Arc<crate::e2e::OutputContext>, crate::e2e::SealError> {
        let at = (sealing.enc, sealing.requester_key);
        if let Some((_, o)) = self.outputs.iter().find(|(k, _)| *k == at) {
            return Ok(o.clone());
        }
        let o = std::sync::Arc::new(new_output_context(device_key, sealing)?);
        if self.outputs.len() == Self::KEPT {
            self.outputs.pop_front();
        }
        self.outputs.push_back((at, o.clone()));
        Ok(o)
    }
}

/// A fresh output context for the jobs of `sealing`'s requester context.
#[cfg(feature = "e2e")]
fn new_output_context(
    device_key: &[u8; 32],
    sealing: &crate::wire::Sealing,
) -> Result<crate::e2e::OutputContext, crate::e2e::SealError> {
    let mut ikm = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut ikm[..])
        .map_err(|_| crate::e2e::SealError::Random)?;
    crate::e2e::OutputContext::new(&sealing.requester_key, device_key, &sealing.enc, &ikm)
}

impl JobHost {
    /// An empty host.
    pub fn new() -> Self {
        JobHost::default()
    }

    /// Draws a fresh session encryption key pair and has the agent state
    /// its public key in the next session's evidence
    /// ([`Agent::set_session_key`]): call it before each
    /// [`Agent::connect`]. Jobs sealed to it are opened with it; jobs
    /// assigned under an earlier key keep theirs.
    #[cfg(feature = "e2e")]
    pub fn new_session_key<S: Signer>(
        &mut self,
        agent: &mut Agent<S>,
    ) -> Result<(), crate::e2e::SealError> {
        let keys = crate::e2e::KeyPair::generate()?;
        agent.set_session_key(*keys.public());
        self.session = Some(SessionContexts {
            keys: std::sync::Arc::new(keys),
            inputs: VecDeque::new(),
            outputs: VecDeque::new(),
        });
        Ok(())
    }

    /// Keeps the books for an event from [`Agent::poll_event`] (reading a
    /// `JobData`'s bytes from `agent`) and says what the caller must do.
    /// Session events (`Ready`, `PeerError`, `Disconnect`) are the
    /// caller's alone.
    pub fn on_event<S: Signer>(&mut self, agent: &Agent<S>, event: &Event) -> Followup {
        match *event {
            Event::JobAssigned { job } => {
                #[allow(unused_mut)]
                let mut hj = HostJob::default();
                #[cfg(feature = "e2e")]
                if agent.job_spec(job).is_some_and(|s| s.sealing.is_some()) {
                    if let Some(session) = &self.session {
                        hj.sealed = Sealed::Assigned(session.keys.clone());
                    }
                }
                self.jobs.insert(job, hj);
            }
            Event::JobData {
                job,
                stream,
                offset,
                ..
            } => {
                if let (Some(hj), Some(data)) = (self.jobs.get_mut(&job), agent.input(job)) {
                    hj.inputs.write(stream, offset, data);
                }
            }
            Event::RunJob { job } => return Followup::Run(job),
            Event::CancelJob { job, .. } => {
                self.drop_job(job);
                return Followup::Withdraw(job);
            }
            Event::ResendOutputs { job } => {
                if self.jobs.get(&job).is_some_and(|hj| hj.outputs.is_some()) {
                    self.to_upload.push_back(job);
                } else {
                    return Followup::LoadOutputs(job);
                }
            }
            Event::PersistResult { job } => self.to_persist.push_back(job),
            Event::ResultAcknowledged { job } | Event::ResultRefused { job, .. } => {
                self.drop_job(job);
                return Followup::Forget(job);
            }
            Event::Ready | Event::PeerError { .. } | Event::Disconnect { .. } => {}
        }
        Followup::None
    }

    fn drop_job(&mut self, job: JobId) {
        self.jobs.remove(&job);
        self.to_upload.retain(|j| *j != job);
        self.to_persist.retain(|j| *j != job);
        self.to_fail.retain(|(j, _)| *j != job);
    }

    /// Takes a job's inputs for its run (`None` if the host or the agent
    /// no longer holds it). The inputs are moved out, not copied. A sealed
    /// job is opened with the session key it was assigned under; one that
    /// does not open fails (`InputIntegrity`, [`SEALED_DID_NOT_OPEN`]) at
    /// the next [`JobHost::work`], and gives no run.
    pub fn take_run<S: Signer>(&mut self, agent: &Agent<S>, job: JobId) -> Option<Run> {
        self.take_run_with(agent, job, true)
    }

    /// [`JobHost::take_run`] leaving a sealed job's plaintext unhashed: the
    /// caller hands the run's plaintext to [`JobHost::hash_run`] before it
    /// reports the run ended (a runtime does it while the executor runs,
    /// so that hashing a large input adds nothing to the job's latency).
    /// A sealed run reported ended unhashed fails (`Host`).
    pub fn take_run_unhashed<S: Signer>(&mut self, agent: &Agent<S>, job: JobId) -> Option<Run> {
        self.take_run_with(agent, job, false)
    }

    /// Hashes a sealed run's plaintext for its result hash (after
    /// [`JobHost::take_run_unhashed`]): the run's `kernel`, its
    /// `push_constants` and its `inputs`, in the clear as the run holds
    /// them. Nothing for a job in the clear, one already hashed, or one the
    /// host no longer runs.
    pub fn hash_run(
        &mut self,
        job: JobId,
        kernel: &[u8],
        push_constants: &[u8],
        inputs: &[Vec<u8>],
    ) {
        #[cfg(feature = "e2e")]
        if let Some(HostJob {
            sealed: Sealed::Running(running),
            ..
        }) = self.jobs.get_mut(&job)
        {
            if !running.opened.is_hashed() {
                let inputs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
                let digest = crate::e2e::PlainDigest::of_assignment(
                    &running.spec,
                    kernel,
                    push_constants,
                    &inputs,
                );
                running.opened.set_plain_digest(digest);
            }
            // A failure here is met again, and reported, when the outputs
            // are sealed.
            let _ = running.prepare();
        }
        #[cfg(not(feature = "e2e"))]
        let _ = (job, kernel, push_constants, inputs);
    }

    fn take_run_with<S: Signer>(
        &mut self,
        agent: &Agent<S>,
        job: JobId,
        hash: bool,
    ) -> Option<Run> {
        #[cfg(not(feature = "e2e"))]
        let _ = hash;
        let spec = agent.job_spec(job)?.clone();
        let hj = self.jobs.get_mut(&job)?;
        let JobInputs {
            kernel,
            mut buffers,
        } = std::mem::take(&mut hj.inputs);
        buffers.resize(spec.buffers.len(), Vec::new());
        if spec.sealing.is_none() {
            return Some(Run {
                job,
                spec,
                kernel,
                buffers,
            });
        }
        #[cfg(feature = "e2e")]
        {
            let keys = match &hj.sealed {
                Sealed::Assigned(keys) => Some(keys.clone()),
                _ => None,
            };
            let device_key = agent.public_key();
            // Opened first: a job that does not open costs no output
            // context (nor a place among the kept ones).
            let opened = match (keys, &spec.sealing, self.session.as_mut()) {
                (Some(keys), Some(sealing), Some(session)) => session
                    .input_for(&keys, &device_key, sealing)
                    .and_then(|receiver| {
                        if hash {
                            crate::e2e::open_job(&receiver, &spec, &kernel, &buffers)
                        } else {
                            crate::e2e::open_job_unhashed(&receiver, &spec, &kernel, &buffers)
                        }
                    })
                    .and_then(|opened| {
                        session
                            .output_for(&device_key, sealing)
                            .map(|output| (opened, output))
                    }),
                _ => Err(crate::e2e::SealError::BadKey),
            };
            let hj = self.jobs.get_mut(&job)?;
            match opened {
                Ok((mut opened, output)) => {
                    let mut run_spec = spec.clone();
                    run_spec.kernel.push_constants =
                        crate::bounded::BoundedVec::from_slice(&opened.push_constants)
                            .unwrap_or_default();
                    run_in_clear_sizes(&mut run_spec);
                    // The plaintext moves to the run (which zeroes it when
                    // dropped); no second copy stays here.
                    let run = Run {
                        job,
                        spec: run_spec,
                        kernel: std::mem::take(&mut *opened.kernel),
                        buffers: opened
                            .inputs
                            .iter_mut()
                            .map(|b| std::mem::take(&mut **b))
                            .collect(),
                    };
                    let mut running = SealedRun {
                        opened,
                        spec,
                        output,
                        sealer: None,
                    };
                    if hash {
                        // A failure here is met again, and reported, when
                        // the outputs are sealed.
                        let _ = running.prepare();
                    }
                    hj.sealed = Sealed::Running(std::boxed::Box::new(running));
                    return Some(run);
                }
                Err(e) => log::warn!("job {job}: the sealed job does not open: {e}"),
            }
        }
        self.to_fail.push_back((
            job,
            JobFailure::new(FailReason::InputIntegrity, SEALED_DID_NOT_OPEN),
        ));
        None
    }

    /// A run ended: its outputs go to the agent, or its failure is
    /// reported, at the next [`JobHost::work`]. A job the host no longer
    /// holds (withdrawn meanwhile) is ignored.
    pub fn run_ended(&mut self, job: JobId, result: Result<JobOutputs, JobFailure>) {
        let Some(hj) = self.jobs.get_mut(&job) else {
            // Withdrawn meanwhile: its outputs (a sealed job's in the clear)
            // are dropped zeroed.
            if let Ok(mut out) = result {
                wipe_outputs(&mut out.outputs);
            }
            return;
        };
        #[allow(unused_mut)]
        let mut result = result;
        #[cfg(feature = "e2e")]
        match std::mem::take(&mut hj.sealed) {
            Sealed::Running(mut running) => {
                result = result.and_then(|out| seal_outputs(job, &mut running, out, hj));
            }
            Sealed::Assigned(_) => {
                // A sealed job that was never opened cannot have outputs to
                // send: whatever came back is dropped, zeroed.
                if let Ok(mut out) = result {
                    wipe_outputs(&mut out.outputs);
                }
                result = Err(JobFailure::new(FailReason::Host, 0));
            }
            other => hj.sealed = other,
        }
        match result {
            Ok(out) => {
                hj.outputs = Some(out.outputs);
                hj.usage = out.usage;
                self.to_upload.push_back(job);
            }
            Err(f) => self.to_fail.push_back((job, f)),
        }
    }

    /// Outputs loaded from a store after [`Followup::LoadOutputs`]: they go
    /// to the agent again.
    pub fn outputs_loaded(&mut self, job: JobId, outputs: Vec<Vec<u8>>) {
        let hj = self.jobs.entry(job).or_default();
        hj.outputs = Some(outputs);
        self.to_upload.push_back(job);
    }

    /// One turn: stores signed results (`persist` gets each record and its
    /// outputs and returns once they are durable, or why not), reports
    /// failed runs and uploads outputs, as far as the agent takes them.
    /// Work the agent cannot take now (events to read first, a full
    /// outgoing queue, a busy signer) waits for the next turn; nothing is
    /// dropped.
    pub fn work<S: Signer>(
        &mut self,
        now: Instant,
        agent: &mut Agent<S>,
        persist: &mut Persist<'_>,
        transmit: &mut Transmit<'_>,
    ) -> WorkReport {
        let mut report = WorkReport::default();
        self.store_results(now, agent, persist, &mut report);
        self.report_failures(now, agent, &mut report);
        self.upload(now, agent, &mut report, transmit);
        report
    }

    /// The storing part of [`JobHost::work`].
    pub fn store_results<S: Signer>(
        &mut self,
        now: Instant,
        agent: &mut Agent<S>,
        persist: &mut Persist<'_>,
        report: &mut WorkReport,
    ) {
        while let Some(&job) = self.to_persist.front() {
            let Some(record) = agent.result_record(job) else {
                self.to_persist.pop_front();
                continue;
            };
            let outputs: Vec<&[u8]> = self
                .jobs
                .get(&job)
                .and_then(|hj| hj.outputs.as_ref())
                .map(|o| o.iter().map(|v| &v[..]).collect())
                .unwrap_or_default();
            if let Err(e) = persist(&record, &outputs) {
                // Held back; tried again next turn.
                log::error!("job {job}: cannot store the result: {e}");
                report.store_error = Some(e);
                return;
            }
            if let Err(e) = agent.confirm_persisted(now, job) {
                log::warn!("job {job}: confirm_persisted: {e}");
            }
            self.to_persist.pop_front();
            report.progressed = true;
        }
    }

    /// The failure-reporting part of [`JobHost::work`].
    pub fn report_failures<S: Signer>(
        &mut self,
        now: Instant,
        agent: &mut Agent<S>,
        report: &mut WorkReport,
    ) {
        while let Some(&(job, f)) = self.to_fail.front() {
            match agent.fail_job(now, job, f.reason, f.detail, f.usage) {
                Ok(()) => {
                    if f.reason == FailReason::KernelRejected {
                        *self.rejections.entry(f.detail as u16).or_default() += 1;
                    }
                }
                Err(Error::Usage(UsageError::UnknownJob(_))) => {}
                Err(Error::EventsPending) => return,
                Err(Error::Signer(e)) => {
                    log::debug!("job {job}: cannot sign the failure yet ({e:?}); trying again");
                    return;
                }
                // The agent's deadline ended the job first (with the same
                // status and price for a timeout): nothing left to report.
                Err(Error::Usage(UsageError::InvalidJobState(_)))
                    if agent.job_state(job) == Some(JobState::AwaitingAck) =>
                {
                    log::info!("job {job}: already ended by its deadline");
                }
                Err(e) => log::warn!("job {job}: cannot report failure: {e}"),
            }
            self.to_fail.pop_front();
            report.progressed = true;
        }
    }

    /// The uploading part of [`JobHost::work`]: writes up to
    /// [`UPLOAD_BYTES`] of output frames (after what the agent had queued)
    /// to `transmit`, and finishes the jobs whose outputs are all written.
    /// A host whose transport buffers without bound (rustls) calls it only
    /// once that buffer has drained, so that little waits in it.
    pub fn upload<S: Signer>(
        &mut self,
        now: Instant,
        agent: &mut Agent<S>,
        report: &mut WorkReport,
        transmit: &mut Transmit<'_>,
    ) {
        let mut used = 0;
        while let Some(&job) = self.to_upload.front() {
            let Some((outputs, usage)) = self
                .jobs
                .get(&job)
                .and_then(|hj| hj.outputs.as_ref().map(|o| (o, hj.usage)))
            else {
                self.to_upload.pop_front();
                continue;
            };
            if UPLOAD_BYTES - used < TRANSMIT_BUFFER {
                // The rest at the next turn.
                return;
            }
            let refs: Vec<&[u8]> = outputs.iter().map(|o| &o[..]).collect();
            let out = self.tx.get_or_insert_with(|| vec![0; UPLOAD_BYTES]);
            let out = &mut out[..UPLOAD_BYTES - used];
            match agent.send_outputs(now, job, &refs, out) {
                Ok(sent) => {
                    if sent.written > 0 {
                        transmit(&out[..sent.written]);
                        used += sent.written;
                        report.progressed = true;
                    }
                    // The rest at the next turn, once this is sent.
                    if !sent.done {
                        return;
                    }
                }
                Err(e) => {
                    log::warn!("job {job}: outputs refused: {e}");
                    self.to_upload.pop_front();
                    report.progressed = true;
                    continue;
                }
            }
            #[cfg(feature = "e2e")]
            let finished = match self.jobs.get(&job).map(|hj| &hj.sealed) {
                Some(Sealed::Done(hash)) => agent.finish_sealed_job(now, job, usage, *hash),
                _ => agent.finish_job(now, job, usage),
            };
            #[cfg(not(feature = "e2e"))]
            let finished = agent.finish_job(now, job, usage);
            match finished {
                Ok(()) => log::info!("job {job}: outputs sent"),
                // Events to read first; finished next turn.
                Err(Error::EventsPending) => return,
                Err(e) => log::warn!("job {job}: cannot finish: {e}"),
            }
            self.to_upload.pop_front();
            report.progressed = true;
        }
    }
}

/// Seals a sealed job's outputs to its requester and keeps the result
/// hash for the receipt; the plaintext outputs are zeroed. A layout the
/// outputs do not fit fails the job (`Host`).
#[cfg(feature = "e2e")]
fn seal_outputs(
    job: JobId,
    running: &mut SealedRun,
    out: JobOutputs,
    hj: &mut HostJob,
) -> Result<JobOutputs, JobFailure> {
    match running.seal(out.outputs) {
        Ok((sealed, hash)) => {
            hj.sealed = Sealed::Done(hash);
            Ok(JobOutputs {
                outputs: sealed,
                usage: out.usage,
            })
        }
        Err(e) => {
            log::warn!("job {job}: cannot seal its outputs: {e}");
            Err(JobFailure::new(FailReason::Host, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent<crate::attest::Ed25519Signer> {
        let signer = crate::attest::Ed25519Signer::from_seed(&[1; 32]).expect("seed");
        Agent::new(
            crate::Config::default(),
            signer,
            crate::attest::ChainState::default(),
        )
        .expect("agent")
    }

    /// A sealed job's plaintext is zeroed: the kernel, every input, the
    /// push constants; and outputs before they are dropped.
    #[test]
    fn wipe_zeroes_the_plaintext() {
        let mut kernel = vec![7u8; 100];
        let mut buffers = vec![vec![8u8; 50], vec![9u8; 3]];
        let mut spec = crate::testkit::JobDescription {
            kernel: vec![0; 8],
            entry_point: "main".into(),
            grid: [1, 1, 1],
            push_constants: vec![1, 2, 3, 4],
            buffers: vec![(vec![1; 4], 4, true)],
            bindings: Vec::new(),
            nonce: [0; 32],
        }
        .assign(1);
        wipe(&mut kernel, &mut buffers, &mut spec);
        assert!(kernel
            .iter()
            .chain(buffers.iter().flatten())
            .all(|&b| b == 0));
        assert!(spec.kernel.push_constants.iter().all(|&b| b == 0));
        let mut outputs = vec![vec![5u8; 10]];
        wipe_outputs(&mut outputs);
        assert!(outputs.iter().flatten().all(|&b| b == 0));
    }

    #[test]
    fn the_books_follow_the_events() {
        let a = agent();
        let mut h = JobHost::new();
        let on = |h: &mut JobHost, e: Event| h.on_event(&a, &e);
        assert_eq!(on(&mut h, Event::JobAssigned { job: 1 }), Followup::None);
        assert_eq!(on(&mut h, Event::RunJob { job: 1 }), Followup::Run(1));
        // Outputs asked again that the host does not hold: load them.
        assert_eq!(
            on(&mut h, Event::ResendOutputs { job: 1 }),
            Followup::LoadOutputs(1)
        );
        h.outputs_loaded(1, vec![vec![1, 2]]);
        assert_eq!(h.to_upload, [1]);
        // Held now: straight to the upload queue.
        assert_eq!(on(&mut h, Event::ResendOutputs { job: 1 }), Followup::None);
        assert_eq!(h.to_upload, [1, 1]);
        // Taken by the coordinator: forgotten, and the store is told.
        assert_eq!(
            on(&mut h, Event::ResultAcknowledged { job: 1 }),
            Followup::Forget(1)
        );
        assert!(h.jobs.is_empty() && h.to_upload.is_empty());
    }

    #[test]
    fn a_withdrawn_job_drops_its_late_result() {
        let a = agent();
        let mut h = JobHost::new();
        h.on_event(&a, &Event::JobAssigned { job: 2 });
        assert_eq!(
            h.on_event(
                &a,
                &Event::CancelJob {
                    job: 2,
                    reason: crate::agent::CancelReason::Deadline,
                }
            ),
            Followup::Withdraw(2)
        );
        h.run_ended(2, Ok(JobOutputs::default()));
        h.run_ended(2, Err(JobFailure::new(FailReason::Host, 0)));
        assert!(h.jobs.is_empty() && h.to_upload.is_empty() && h.to_fail.is_empty());
    }
}
