//! How jobs end: the receipt of a completed or failed job is signed, held
//! until the host has stored it, sent in receipt-chain order, and kept until
//! the coordinator acknowledges or refuses it; result records carry it
//! across restarts.

use super::job::{
    first_readback, Job, PendingFailure, Phase, SignedResult, Step, Upload, AGENT_RECEIPT_LEN,
};
use super::{
    Agent, ConnState, EventRecord, Outcome, ResultRecord, EVENT_RESERVE, HOST_CALL_EVENTS,
};
use crate::attest::{
    batched_link, result_hash, result_seal, Receipt, ReceiptStatus, Signer, RECEIPT_LEN,
};
use crate::bounded::BoundedVec;
use crate::error::{Error, PeerError, UsageError};
use crate::limits::{HEADER_LEN, MAX_EVENTS};
use crate::time::{Duration, Instant};
use crate::wire::{
    Completed, Digest, FailReason, Failed, JobId, Message, MessageType, ReceiptMsg, Usage,
    UsageReport,
};

impl<S: Signer> Agent<S> {
    /// Ends a job whose outputs were all written: signs its receipt over the
    /// metered `usage` and sends the outcome. After a reconnect
    /// ([`Event::ResendOutputs`]) it checks the outputs are the same and sends
    /// the receipt signed the first time (`usage` is then ignored).
    ///
    /// [`Event::ResendOutputs`]: super::Event::ResendOutputs
    ///
    /// A sealed job (`JobAssign::sealing`) ends with
    /// [`Agent::finish_sealed_job`] instead; here it gets `InvalidJobState`.
    pub fn finish_job(&mut self, now: Instant, id: JobId, usage: Usage) -> Result<(), Error> {
        self.finish(now, id, usage, None)
    }

    /// Ends a sealed job whose sealed outputs were all written, as
    /// [`Agent::finish_job`] does, with the result hash the host computed
    /// from what only it saw in the clear: the keyed hash of the plaintext
    /// kernel, inputs and outputs (`docs/PROTOCOL.md`, "Sealed jobs";
    /// [`crate::e2e`] computes it). The receipt carries it, and its seal is
    /// made over it. A job in the clear gets `InvalidJobState`.
    pub fn finish_sealed_job(
        &mut self,
        now: Instant,
        id: JobId,
        usage: Usage,
        result_hash: Digest,
    ) -> Result<(), Error> {
        self.finish(now, id, usage, Some(result_hash))
    }

    fn finish(
        &mut self,
        now: Instant,
        id: JobId,
        usage: Usage,
        sealed_result: Option<Digest>,
    ) -> Result<(), Error> {
        self.require_event_room(HOST_CALL_EVENTS)?;
        let i = self.live_job_index(id)?;
        let ready = self.conn == ConnState::Ready;
        let epoch = self.epoch;
        let Phase::Assigned { spec, step } = &mut self.jobs[i].phase else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        // Outputs sent again after a reconnect reuse the signed receipt,
        // whichever call ends them.
        if spec.sealing.is_some() != sealed_result.is_some()
            && !matches!(step, Step::Resending { .. })
        {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        }
        let output_len: u64 = spec
            .buffers
            .iter()
            .filter(|b| b.readback)
            .fold(0, |sum, b| sum.saturating_add(b.len));
        let (output_root, fresh_connection) = match step {
            // A job without read-back buffers has nothing to upload.
            Step::Running { .. } if first_readback(spec).is_none() => {
                (crate::merkle::empty_root(), true)
            }
            Step::Uploading { upload, .. } | Step::Resending { upload, .. } => {
                if !upload.is_complete(spec) {
                    return Err(Error::Usage(UsageError::OutputIncomplete(id)));
                }
                (upload.builder.root(), upload.epoch == epoch && ready)
            }
            _ => return Err(Error::Usage(UsageError::InvalidJobState(id))),
        };
        if let Step::Resending { upload, result } = step {
            let same = matches!(
                result.outcome,
                Outcome::Completed { output_root: first, .. } if first == output_root
            );
            if !same {
                // Restart the upload: the host must write the original outputs.
                *upload = Upload::new(spec, upload.epoch);
                return Err(Error::Usage(UsageError::OutputMismatch(id)));
            }
            *step = Step::AwaitingAck {
                result: result.clone(),
                unsent: true,
            };
        } else {
            let outcome = Outcome::Completed {
                output_len,
                output_root,
            };
            self.sign_outcome(now, i, outcome, usage, sealed_result)?;
            self.maybe_sign_batch(now);
        }
        if fresh_connection || output_len == 0 {
            self.flush_outcomes();
        } else if ready {
            // Part of the upload went to an earlier connection: send it again.
            self.start_resend(i);
        }
        Ok(())
    }

    /// Ends a running job that could not complete: signs a failure receipt over
    /// the metered `usage` and sends it.
    ///
    /// A [`FailReason::Timeout`] (the kernel ran out the time limit the host
    /// gave it) is charged the job's quote ([`Policy::charge_timeout`]); its
    /// GPU time is what the host metered, at most the time from the start to
    /// the job's deadline. Every other failure is charged 0. After the
    /// deadline the agent has already ended the job with the same status and
    /// price, and a late call gets `InvalidJobState`.
    ///
    /// [`Policy::charge_timeout`]: crate::policy::Policy::charge_timeout
    pub fn fail_job(
        &mut self,
        now: Instant,
        id: JobId,
        reason: FailReason,
        detail: u32,
        usage: Usage,
    ) -> Result<(), Error> {
        self.require_event_room(HOST_CALL_EVENTS)?;
        let i = self.live_job_index(id)?;
        let job = &self.jobs[i];
        let (Some(Step::Running { started_at, .. }) | Some(Step::Uploading { started_at, .. })) =
            job.step()
        else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        let mut usage = usage;
        if reason == FailReason::Timeout {
            usage.gpu_time_us = usage.gpu_time_us.min(job.time_to_deadline(*started_at));
        }
        // On a signer error the job is unchanged: the host may call again.
        self.end_failed(now, i, reason, detail, usage)
    }

    /// Signs and sends a failure.
    fn end_failed(
        &mut self,
        now: Instant,
        i: usize,
        reason: FailReason,
        detail: u32,
        usage: Usage,
    ) -> Result<(), Error> {
        self.sign_outcome(now, i, Outcome::Failed { reason, detail }, usage, None)?;
        self.maybe_sign_batch(now);
        self.flush_outcomes();
        Ok(())
    }

    /// Ends a job with a failure the agent decided on. If the signer cannot
    /// sign now (a busy secure element, say), the failure is kept, with its
    /// reason, and retried every second; the job takes no more input.
    pub(super) fn end_failed_or_retry(
        &mut self,
        now: Instant,
        i: usize,
        reason: FailReason,
        detail: u32,
        usage: Usage,
    ) {
        if self.end_failed(now, i, reason, detail, usage).is_ok() {
            return;
        }
        let job = &mut self.jobs[i];
        job.deadline = now + Duration::from_secs(1);
        if let Phase::Assigned {
            step:
                Step::Receiving { failure, .. }
                | Step::Running { failure, .. }
                | Step::Uploading { failure, .. },
            ..
        } = &mut job.phase
        {
            *failure = Some(PendingFailure {
                reason,
                detail,
                usage,
            });
        }
    }

    /// Signs the receipt of a job whose result is not signed yet, for
    /// `outcome` and the metered `usage` (the transfer sizes are the job's),
    /// and moves it to `AwaitingAck`, its outcome not yet sent. When the
    /// session batches receipts and another job could join a batch (or
    /// results already wait for one), the receipt payload waits for the
    /// batch's signature instead ([`Agent::maybe_sign_batch`]).
    /// `sealed_result`: a completed sealed job's result hash, from the host.
    fn sign_outcome(
        &mut self,
        now: Instant,
        i: usize,
        outcome: Outcome,
        usage: Usage,
        sealed_result: Option<Digest>,
    ) -> Result<(), Error> {
        let batch = self.batch_due.is_some() || (self.batching_on() && self.live_job_besides(i));
        // The next position: after the last result waiting for a batch, if
        // any, else after the last receipt signed.
        let at = self
            .unsigned()
            .last()
            .and_then(|&(k, _)| self.jobs[k].result())
            .map_or(self.chain, |r| r.chain_after);
        let batch_due = self.batch_due.unwrap_or(now + self.batch_delay());
        let job = &mut self.jobs[i];
        let id = job.id;
        let Phase::Assigned { spec, step } = &mut job.phase else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        let started_at = match step {
            Step::Receiving { .. } => Instant::ZERO,
            Step::Running { started_at, .. } | Step::Uploading { started_at, .. } => *started_at,
            // Signed already.
            Step::Resending { .. } | Step::AwaitingAck { .. } => {
                return Err(Error::Usage(UsageError::InvalidJobState(id)));
            }
        };
        let khash = spec.kernel_hash();
        let (status, output_root, output_len) = match outcome {
            Outcome::Completed {
                output_len,
                output_root,
            } => (ReceiptStatus::Completed, output_root, output_len),
            Outcome::Failed { reason, .. } => (
                ReceiptStatus::Failed(reason),
                crate::merkle::empty_root(),
                0,
            ),
        };
        // `bytes_in` saturates, as in `assignment_is_sane`: with no transfer
        // limit configured, the sizes may add up past `u64::MAX`.
        let usage = Usage {
            bytes_in: spec.bytes_in(),
            bytes_out: output_len,
            ..usage
        };
        let policy = &self.config.policy;
        let price = match status {
            ReceiptStatus::Completed => policy.charge(&usage, job.max_price),
            ReceiptStatus::Failed(FailReason::Timeout) => policy.charge_timeout(job.quote),
            ReceiptStatus::Failed(_) => 0,
        };
        let rhash = match (status, sealed_result) {
            (ReceiptStatus::Completed, Some(sealed)) => sealed,
            _ => result_hash(&khash, &spec.inputs_root, &output_root, output_len),
        };
        let receipt = Receipt {
            status,
            job: id,
            requester_nonce: spec.requester_nonce,
            kernel_hash: khash,
            input_root: spec.inputs_root,
            output_root,
            output_len,
            result_hash: rhash,
            result_seal: result_seal(&self.signer.public_key(), id, &rhash),
            usage,
            price,
            started_at: started_at.micros,
            ended_at: now.micros,
            evidence_hash: job.evidence_hash,
            key_id: self.key_id,
            sequence: at.next_sequence,
            prev_hash: at.prev_hash,
        };
        let persist = self.config.persist_results;
        if batch {
            let payload = receipt.encode_payload();
            let mut after = at;
            after.advance(batched_link(&payload));
            self.batch_due = Some(batch_due);
            *step = Step::AwaitingAck {
                result: SignedResult {
                    outcome,
                    usage,
                    price,
                    // The payload is shorter than any receipt: it fits.
                    receipt: BoundedVec::from_slice(&payload).unwrap_or_default(),
                    signed: false,
                    chain_after: after,
                    persisted: !persist,
                },
                unsent: true,
            };
            return Ok(());
        }
        let mut signed = [0u8; RECEIPT_LEN];
        let n = receipt
            .sign(&mut self.signer, &mut signed)
            .map_err(Error::Signer)?;
        // Every receipt is RECEIPT_LEN bytes (its payload has one length).
        debug_assert_eq!(n, RECEIPT_LEN);
        self.chain.advance(Receipt::hash(&signed[..n]));
        *step = Step::AwaitingAck {
            result: SignedResult {
                outcome,
                usage,
                price,
                receipt: BoundedVec::from_slice(&signed).unwrap_or_default(),
                signed: true,
                chain_after: self.chain,
                persisted: !persist,
            },
            unsent: true,
        };
        if persist {
            self.push_event(EventRecord::PersistResult(id));
        }
        Ok(())
    }

    /// The host stored a job's result durably ([`Event::PersistResult`]): the
    /// agent may now send it.
    ///
    /// [`Event::PersistResult`]: super::Event::PersistResult
    pub fn confirm_persisted(&mut self, _now: Instant, id: JobId) -> Result<(), Error> {
        let i = self.job_index(id)?;
        let Some(result) = self.jobs[i].result_mut() else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        result.persisted = true;
        self.flush_outcomes();
        Ok(())
    }

    /// Everything the agent needs to deliver an ended job's result after a
    /// restart: store it on [`Event::PersistResult`], hand it back with
    /// [`Agent::restore_result`].
    ///
    /// [`Event::PersistResult`]: super::Event::PersistResult
    pub fn result_record(&self, id: JobId) -> Option<ResultRecord> {
        let job = &self.jobs[self.find(id)?];
        let spec = job.spec()?;
        let result = job.result().filter(|r| r.signed)?;
        Some(ResultRecord {
            job: id,
            spec: spec.clone(),
            outcome: result.outcome,
            usage: result.usage,
            price: result.price,
            // Shorter than any receipt's longest form: it fits.
            receipt: BoundedVec::from_slice(&result.receipt).unwrap_or_default(),
            next_sequence: result.chain_after.next_sequence,
            prev_hash: result.chain_after.prev_hash,
        })
    }

    /// Takes back a stored result after a restart. It is delivered like any
    /// result not yet acknowledged (outputs through [`Event::ResendOutputs`]):
    /// at the next `Ready`, or at once during a session. A host with more
    /// stored results than the agent holds ([`crate::limits::MAX_JOBS`])
    /// restores the oldest first, and each further one when an
    /// acknowledgement makes room, declining offers meanwhile
    /// ([`Agent::set_device_available`]) so that receipts go out in chain
    /// order.
    ///
    /// [`Event::ResendOutputs`]: super::Event::ResendOutputs
    pub fn restore_result(&mut self, record: &ResultRecord) -> Result<(), Error> {
        if self.find(record.job).is_some() {
            return Err(Error::Usage(UsageError::InvalidJobState(record.job)));
        }
        if self.conn == ConnState::Ready && MAX_EVENTS - self.events.len() < EVENT_RESERVE {
            // Events must be drained first: the resend asks the host by one.
            return Err(Error::WouldBlock);
        }
        // A receipt this agent could not have signed (a longer audit path
        // than its batches make) cannot be held.
        let receipt = BoundedVec::from_slice(&record.receipt)
            .map_err(|_| Error::Usage(UsageError::CapacityExceeded))?;
        let job = Job {
            id: record.job,
            max_price: record.price,
            quote: record.price,
            bytes_in: record.usage.bytes_in,
            bytes_out: record.usage.bytes_out,
            // Its receipt is signed already: these are not read again.
            deadline: Instant::ZERO,
            evidence_hash: [0; 32],
            phase: Phase::Assigned {
                spec: record.spec.clone(),
                step: Step::AwaitingAck {
                    result: SignedResult {
                        outcome: record.outcome,
                        usage: record.usage,
                        price: record.price,
                        receipt,
                        signed: true,
                        chain_after: record.chain_after(),
                        persisted: true,
                    },
                    unsent: true,
                },
            },
        };
        self.jobs
            .push(job)
            .map_err(|_| Error::Usage(UsageError::CapacityExceeded))?;
        if self.conn == ConnState::Ready {
            self.start_resend(self.jobs.len() - 1);
            self.flush_outcomes();
        }
        Ok(())
    }

    /// Sends the outcome messages of ended jobs whose results have not gone out
    /// on this connection, as far as the outgoing queue allows.
    pub(super) fn flush_outcomes(&mut self) {
        if self.conn != ConnState::Ready {
            return;
        }
        // Outcomes go out in receipt-chain order: the oldest signed result not
        // yet sent on this connection first, so that verifiers see sequence
        // numbers in order. One still being uploaded again holds the later ones.
        loop {
            let next = self
                .jobs
                .iter()
                .enumerate()
                .filter_map(|(i, j)| match j.step()? {
                    Step::AwaitingAck {
                        result,
                        unsent: true,
                    }
                    | Step::Resending { result, .. } => Some((i, result.chain_after.next_sequence)),
                    _ => None,
                })
                .min_by_key(|&(_, sequence)| sequence)
                .map(|(i, _)| i);
            let Some(i) = next else { return };
            let job = &mut self.jobs[i];
            let id = job.id;
            let Phase::Assigned {
                step: Step::AwaitingAck { result, unsent },
                ..
            } = &mut job.phase
            else {
                return;
            };
            if !result.signed || !result.persisted || self.tx.free() < MAX_OUTCOME_BYTES {
                return;
            }
            let first = match result.outcome {
                Outcome::Completed {
                    output_len,
                    output_root,
                } => Message::Completed(Completed {
                    job: id,
                    output_len,
                    output_root,
                }),
                Outcome::Failed { reason, detail } => Message::Failed(Failed {
                    job: id,
                    reason,
                    detail,
                }),
            };
            // Room was checked above, so these do not fail.
            let _ = self.tx.push(&first);
            let _ = self.tx.push(&Message::UsageReport(UsageReport {
                job: id,
                usage: result.usage,
                price: result.price,
            }));
            let _ = self.tx.push(&Message::Receipt(ReceiptMsg {
                job: id,
                bytes: &result.receipt,
            }));
            *unsent = false;
        }
    }

    pub(super) fn on_ack(&mut self, id: JobId) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::ResultAck)?;
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        let Some(Step::AwaitingAck {
            result,
            unsent: false,
        }) = self.jobs[i].step()
        else {
            return Err((
                Error::Peer(PeerError::UnexpectedMessage(MessageType::ResultAck)),
                id,
            ));
        };
        match result.outcome {
            Outcome::Completed { .. } => {
                self.stats.jobs_completed += 1;
                self.stats.earnings = self.stats.earnings.saturating_add(result.price);
            }
            Outcome::Failed { .. } => self.stats.jobs_failed += 1,
        }
        self.stats.gpu_time_us = self
            .stats
            .gpu_time_us
            .saturating_add(result.usage.gpu_time_us);
        self.jobs.swap_remove(i);
        self.push_event(EventRecord::ResultAcknowledged(id));
        self.check_drained().map_err(|e| (e, id))
    }

    /// The coordinator will not accept the result: forget it as if it were
    /// acknowledged (the receipt stays in the chain), and tell the host.
    pub(super) fn on_refuse(&mut self, id: JobId, reason: u16) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::ResultRefuse)?;
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        if !matches!(
            self.jobs[i].step(),
            Some(Step::AwaitingAck { unsent: false, .. })
        ) {
            return Err((
                Error::Peer(PeerError::UnexpectedMessage(MessageType::ResultRefuse)),
                id,
            ));
        }
        self.stats.results_refused += 1;
        self.jobs.swap_remove(i);
        self.push_event(EventRecord::ResultRefused(id, reason));
        self.check_drained().map_err(|e| (e, id))
    }
}

/// Bytes of the three outcome frames (outcome, usage, receipt) of one job.
const MAX_OUTCOME_BYTES: usize = 3 * HEADER_LEN + 64 + 64 + 16 + AGENT_RECEIPT_LEN;
const _: () = assert!(MAX_OUTCOME_BYTES <= crate::limits::TX_CAPACITY);
