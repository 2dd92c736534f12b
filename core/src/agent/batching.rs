//! Receipts signed in batches (`docs/PROTOCOL.md`, "Batched receipts"): when
//! the coordinator asks for it (`Batching`, protocol version 2), a job that
//! ends while another could still join a batch gets its receipt payload and
//! chain position at once, and waits for one signature over the batch. The
//! batch is signed when it holds `max_receipts`, when its oldest result has
//! waited `max_delay_us`, when no job is left that could join it, or when
//! the session ends or drains.

use heapless::Vec;

use super::job::{Phase, Step, AGENT_RECEIPT_LEN};
use super::{Agent, ConnState, EventRecord};
use crate::attest::{
    batch_leaf, sign_batch, write_batched, BatchPath, Signer, BATCH_LEN, RECEIPT_PAYLOAD_LEN,
};
use crate::bounded::BoundedVec;
use crate::error::{Error, PeerError};
use crate::limits::MAX_JOBS;
use crate::time::{Duration, Instant};
use crate::wire::{Batching, Digest, JobId, MessageType, PROTOCOL_VERSION_2};

/// How long a batch whose signature failed waits before the next try.
const SIGN_RETRY: Duration = Duration::from_secs(1);

impl<S: Signer> Agent<S> {
    /// The coordinator's `Batching`: adopted for the rest of the session.
    /// Turning batching off (or lowering `max_receipts` to what already
    /// waits) signs the results waiting now.
    pub(super) fn on_batching(&mut self, now: Instant, b: Batching) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::Batching)?;
        if self.version < PROTOCOL_VERSION_2 {
            return Err((
                Error::Peer(PeerError::UnexpectedMessage(MessageType::Batching)),
                0,
            ));
        }
        self.batching = b;
        self.maybe_sign_batch(now);
        Ok(())
    }

    /// Whether this session batches receipts.
    pub(super) fn batching_on(&self) -> bool {
        self.batching.max_receipts >= 2
    }

    /// The longest a result waits for its batch's signature.
    pub(super) fn batch_delay(&self) -> Duration {
        Duration::from_micros(u64::from(self.batching.max_delay_us))
    }

    /// Whether a job other than `i` could still end in time to join a
    /// batch: accepted, receiving, running or uploading (not one whose
    /// failure waits for the signer).
    pub(super) fn live_job_besides(&self, i: usize) -> bool {
        self.jobs
            .iter()
            .enumerate()
            .any(|(k, j)| k != i && j.result().is_none() && j.failure().is_none())
    }

    /// Results waiting for a batch signature, as (job index, sequence),
    /// in chain order.
    pub(super) fn unsigned(&self) -> Vec<(usize, u64), MAX_JOBS> {
        let mut out: Vec<(usize, u64), MAX_JOBS> = self
            .jobs
            .iter()
            .enumerate()
            .filter_map(|(i, j)| {
                let r = j.result()?;
                // The sequence of a result is one below the chain after it.
                (!r.signed).then_some((i, r.chain_after.next_sequence.saturating_sub(1)))
            })
            .collect();
        out.sort_unstable_by_key(|&(_, sequence)| sequence);
        out
    }

    /// Signs the waiting results if their batch is due (see the module
    /// notes), and sends what that lets go. A signer error leaves them
    /// waiting, tried again in a second.
    pub(super) fn maybe_sign_batch(&mut self, now: Instant) {
        let Some(due) = self.batch_due else { return };
        let waiting = self.unsigned().len();
        let max = usize::from(self.batching.max_receipts);
        let due_now = !self.batching_on()
            || waiting >= max
            || now >= due
            || self.conn != ConnState::Ready
            || self.draining
            || !self.live_job_besides(usize::MAX /* no job excepted */);
        if !due_now {
            return;
        }
        if self.sign_batch().is_err() {
            self.batch_due = Some(now + SIGN_RETRY);
        }
        self.flush_outcomes();
    }

    /// Signs every result waiting for a batch signature, in batches of at
    /// most `max_receipts` (all in one when batching is off), in chain
    /// order. On a signer error the unsigned ones keep waiting. Not inlined:
    /// its buffers (payloads, audit paths, a receipt: about 3 KiB without
    /// `std`, 22 KiB with its 32 job slots) take stack only while it runs,
    /// not in every caller's frame.
    #[inline(never)]
    pub(super) fn sign_batch(&mut self) -> Result<(), Error> {
        loop {
            let waiting = self.unsigned();
            if waiting.is_empty() {
                break;
            }
            let take = if self.batching_on() {
                waiting.len().min(usize::from(self.batching.max_receipts))
            } else {
                waiting.len()
            };
            let batch = &waiting[..take];
            let mut leaves: Vec<Digest, MAX_JOBS> = Vec::new();
            let mut payloads = [[0u8; RECEIPT_PAYLOAD_LEN]; MAX_JOBS];
            for (k, &(i, _)) in batch.iter().enumerate() {
                let Some(r) = self.jobs[i].result() else {
                    return Ok(());
                };
                payloads[k].copy_from_slice(
                    r.receipt
                        .get(..RECEIPT_PAYLOAD_LEN)
                        .unwrap_or(&[0; RECEIPT_PAYLOAD_LEN]),
                );
                let _ = leaves.push(batch_leaf(&payloads[k]));
            }
            let mut paths: [BatchPath; MAX_JOBS] = Default::default();
            let mut statement = [0u8; BATCH_LEN];
            let first_sequence = batch[0].1;
            sign_batch(
                &mut self.signer,
                first_sequence,
                &leaves,
                &mut paths[..take],
                &mut statement,
            )
            .map_err(Error::Signer)?;
            let persist = self.config.persist_results;
            for (k, &(i, _)) in batch.iter().enumerate() {
                let id = self.jobs[i].id;
                let Phase::Assigned {
                    step: Step::AwaitingAck { result, .. },
                    ..
                } = &mut self.jobs[i].phase
                else {
                    continue;
                };
                let mut out = [0u8; AGENT_RECEIPT_LEN];
                let Some(n) =
                    write_batched(&statement, k as u32, &paths[k], &payloads[k], &mut out)
                else {
                    continue;
                };
                result.receipt = BoundedVec::from_slice(&out[..n]).unwrap_or_default();
                result.signed = true;
                self.chain = result.chain_after;
                if persist {
                    self.push_event(EventRecord::PersistResult(id));
                }
            }
        }
        self.batch_due = None;
        Ok(())
    }
}
