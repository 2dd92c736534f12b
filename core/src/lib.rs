//! Tessera's provider agent core.
//!
//! The core speaks the provider protocol (`docs/PROTOCOL.md`), runs the provider
//! state machine and signs what the device is and what it computed. It is
//! `no_std`, never allocates, never reads a clock and never panics on input:
//! time and bytes come in, bytes and events go out. Hosted builds add the
//! Vulkan dispatcher (feature `vulkan`) and the network runtime (feature `net`),
//! which drive this same core.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod attest;
pub mod bounded;
mod crypto;
pub mod e2e;
pub mod error;
#[cfg(feature = "vulkan")]
pub mod gpu_host;
#[cfg(feature = "std")]
pub mod host;
pub mod job;
pub mod limits;
pub mod merkle;
#[cfg(feature = "cli")]
pub mod metrics;
#[cfg(feature = "tls")]
pub mod net;
#[cfg(feature = "operator")]
pub mod operator;
pub mod policy;
pub mod reasons;
pub mod store;
#[cfg(feature = "std")]
pub mod testkit;
pub mod time;
pub mod wire;
#[cfg(feature = "json")]
pub mod wire_json;

pub use agent::{Agent, Config, ConnState, Event, JobState, Sent, SentAll};
pub use error::{codes, ConfigError, Error, ErrorCode, InputError, PeerError, UsageError};
pub use policy::{LinearPrice, Policy};
pub use time::{Duration, Instant};

#[cfg(feature = "vulkan")]
#[allow(unsafe_code)]
pub mod vulkan;
