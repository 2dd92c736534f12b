//! The network runtime (feature `net`): a mio event loop that drives the agent
//! over TCP and TLS 1.3 (rustls), runs jobs through an [`Executor`], keeps
//! results crash-safely until acknowledged and reconnects with backoff.

//! Feature `tls` alone gives the TLS configuration, for coordinators and
//! requesters.

#[cfg(feature = "net")]
pub mod executor;
#[cfg(feature = "net")]
pub mod runtime;
#[cfg(feature = "net")]
mod timer;
pub mod tls;

#[cfg(feature = "net")]
pub use executor::{CancelFlag, Executor, FnExecutor, JobFailure, JobOutputs, JobToRun};
#[cfg(feature = "net")]
pub use runtime::{DrainHandle, NetConfig, Runtime, RuntimeError, Status};
pub use tls::{client_config, spki_sha256, TlsError, Trust};
