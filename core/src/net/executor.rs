//! What runs jobs for the network runtime: the Vulkan dispatcher, or any other
//! engine behind the [`Executor`] trait (a CPU function in tests).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::host::{JobFailure, JobOutputs};
use crate::wire::{JobAssign, JobId};

/// Set when the job no longer needs running: the coordinator cancelled it,
/// its deadline passed on the agent's side, or the session that assigned it
/// ended. An executor that can stop a running job early checks it (the
/// Vulkan dispatcher does, between waits on the device, and stops the
/// kernel with its watchdog); the runtime discards whatever the run returns.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        CancelFlag::default()
    }

    /// Sets the flag.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for executors that take an `AtomicBool`.
    pub fn as_atomic(&self) -> &Arc<AtomicBool> {
        &self.0
    }
}

/// A job ready to run: its assignment, kernel bytes and initial buffer
/// contents (each shorter than or equal to the buffer's length; the rest is
/// zero).
#[derive(Clone, Debug)]
pub struct JobToRun {
    /// The job.
    pub id: JobId,
    /// This run's number, unique within the runtime: a coordinator may
    /// cancel a job and assign another under the same id while the first
    /// run is still going, and the runtime must not take one for the other.
    pub run: u64,
    /// Kernel, parameters and buffer layout.
    pub spec: JobAssign,
    /// SPIR-V bytes, verified against the assignment's root.
    pub kernel: Vec<u8>,
    /// Initial contents of each buffer, in binding order.
    pub buffers: Vec<Vec<u8>>,
    /// When the run must have ended: the job's deadline, as the agent
    /// counts it from the assignment (time spent waiting in the queue
    /// counts).
    pub deadline: Instant,
    /// Set when the job no longer needs running.
    pub cancel: CancelFlag,
}

impl Drop for JobToRun {
    fn drop(&mut self) {
        // A sealed job's plaintext lives here while it runs: zeroed when
        // the run ends.
        if self.spec.sealing.is_some() {
            crate::host::wipe(&mut self.kernel, &mut self.buffers, &mut self.spec);
        }
    }
}

impl JobToRun {
    /// The time left until the deadline, from now (zero once it passed).
    pub fn timeout(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Runs jobs. Called on the runtime's worker thread, one job (or one
/// batch) at a time.
pub trait Executor: Send + 'static {
    /// Runs one job to completion or failure. Must return within about
    /// [`JobToRun::timeout`], and may return early (with any failure) once
    /// [`JobToRun::cancel`] is set.
    fn run(&mut self, job: &JobToRun) -> Result<JobOutputs, JobFailure>;

    /// The most jobs [`Executor::run_batch`] takes at once. The worker
    /// hands it up to this many of the jobs waiting in the queue; 1 (the
    /// default) runs jobs one at a time through [`Executor::run`].
    fn batch_size(&self) -> usize {
        1
    }

    /// Runs several jobs, calling `done` once for each with its index in
    /// `jobs` and what [`Executor::run`] would have returned, as soon as
    /// that is known. Each job keeps its own deadline and cancel flag. The
    /// default runs them one after another.
    fn run_batch(
        &mut self,
        jobs: &[&JobToRun],
        done: &mut dyn FnMut(usize, Result<JobOutputs, JobFailure>),
    ) {
        for (i, job) in jobs.iter().enumerate() {
            done(i, self.run(job));
        }
    }

    /// Whether the engine takes work now. The worker asks after every job
    /// and, while the answer is no, about every 100 ms while idle (so the
    /// call should be cheap, and may reclaim what it waits for); the agent
    /// declines offers with `Unavailable` until it is yes again. A job that
    /// arrives meanwhile is still given to [`Executor::run`], which fails it.
    fn accepting_jobs(&mut self) -> bool {
        true
    }

    /// Whether [`Executor::run`] may run `job` on the runtime's own thread
    /// rather than on its worker thread (never both at once). The runtime
    /// asks only for a job the agent holds alone whose deadline is at most
    /// [`NetConfig::inline_deadline`](super::NetConfig::inline_deadline)
    /// away; run there, it skips the hand-over to the worker and back (two
    /// thread wake-ups, the largest cost of a tiny job after the
    /// network's), and the runtime's loop waits for it. So say yes only
    /// when the run is bounded by the job's deadline (the Vulkan host: a
    /// kernel whose validation is cached and that did not come sealed).
    /// Called on the runtime's thread just before the run; keep it cheap.
    /// The default, `false`, keeps every run on the worker thread, for
    /// engines bound to the thread they run on.
    fn may_run_inline(&mut self, job: &JobToRun) -> bool {
        let _ = job;
        false
    }
}

/// An executor from a plain function, for tests and CPU-only hosts.
pub struct FnExecutor<F>(pub F);

impl<F> Executor for FnExecutor<F>
where
    F: FnMut(&JobToRun) -> Result<JobOutputs, JobFailure> + Send + 'static,
{
    fn run(&mut self, job: &JobToRun) -> Result<JobOutputs, JobFailure> {
        (self.0)(job)
    }
}
