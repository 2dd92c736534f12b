//! What runs jobs for the network runtime: the Vulkan dispatcher, or any other
//! engine behind the [`Executor`] trait (a CPU function in tests).

pub use crate::host::{JobFailure, JobOutputs};
use crate::wire::{JobAssign, JobId};

/// A job ready to run: its assignment, kernel bytes and initial buffer
/// contents (each shorter than or equal to the buffer's length; the rest is
/// zero).
#[derive(Clone, Debug)]
pub struct JobToRun {
    /// The job.
    pub id: JobId,
    /// Kernel, parameters and buffer layout.
    pub spec: JobAssign,
    /// SPIR-V bytes, verified against the assignment's root.
    pub kernel: Vec<u8>,
    /// Initial contents of each buffer, in binding order.
    pub buffers: Vec<Vec<u8>>,
    /// How long the run may take before it must be abandoned.
    pub timeout: std::time::Duration,
}

/// Runs jobs. Called on the runtime's worker thread, one job at a time.
pub trait Executor: Send + 'static {
    /// Runs one job to completion or failure. Must return within about
    /// `job.timeout`.
    fn run(&mut self, job: &JobToRun) -> Result<JobOutputs, JobFailure>;

    /// Whether the engine takes work now. The worker asks after every job
    /// and, while the answer is no, about every 100 ms while idle (so the
    /// call should be cheap, and may reclaim what it waits for); the agent
    /// declines offers with `Unavailable` until it is yes again. A job that
    /// arrives meanwhile is still given to [`Executor::run`], which fails it.
    fn accepting_jobs(&mut self) -> bool {
        true
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
