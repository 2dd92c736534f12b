//! Tessera's reference coordinator and requester.
//!
//! The coordinator is the network side of the provider protocol
//! (`docs/PROTOCOL.md`): a TLS 1.3 server that admits providers on verified
//! evidence, matches requesters' jobs to them by capability and price, streams
//! kernels and inputs, collects outputs and verifies every receipt (signature,
//! the provider's receipt chain across sessions, nonce, kernel, inputs and
//! outputs) before it acknowledges the result and hands it to the requester.
//!
//! Requesters speak a small protocol of their own on the same port (see
//! `README.md` beside this crate): [`requester::submit`] sends a job and
//! returns the result after verifying it again, independently.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod budget;
pub mod certs;
mod conn;
pub mod demo;
mod engine;
mod event_loop;
pub mod protocol;
pub mod requester;
mod server;
pub mod state;
mod submission;
pub mod tls;

pub use engine::{
    ProviderInfo, PublicKey, Stats, CANCEL_DEADLINE, CANCEL_OFFER_WITHDRAWN,
    CANCEL_PRICE_OVER_MAXIMUM, CANCEL_REQUESTER_GONE,
};
pub use protocol::{BufferInit, FailureCode, JobFailure, JobResult, Request, Response, Submit};
pub use requester::{submit, verify_result, RequesterError, ResultCheck, ResultCheckError};
pub use server::{Config, Coordinator, CoordinatorError};
