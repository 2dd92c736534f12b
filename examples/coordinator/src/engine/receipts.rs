//! Collecting outputs and verifying receipts: signature, chain, content.

use super::*;

impl Engine {
    /// Applies `f` to a job assigned to this session's key; a job already
    /// settled (a resend) is ignored, any other gets `Error{UnknownJob}`.
    pub(super) fn with_assigned(
        &mut self,
        sid: SessionId,
        id: JobId,
        f: impl FnOnce(&mut Assigned),
    ) {
        let Some(key) = self.session_key(sid) else {
            return;
        };
        if self
            .keys
            .get(&key)
            .is_some_and(|r| r.done.contains_key(&id))
        {
            // A resend of a result already settled.
            return;
        }
        match self.jobs.get_mut(&id).map(|j| &mut j.stage) {
            Some(Stage::Assigned(a)) if a.key == key => f(a),
            _ => self.send_error(sid, ErrorCode::UnknownJob, id),
        }
    }

    /// The provider started the job: its inputs are no longer needed (a job
    /// lost after this point waits for its provider, it is not offered
    /// again).
    pub(super) fn on_started(&mut self, sid: SessionId, id: JobId) {
        let mut started = false;
        self.with_assigned(sid, id, |a| {
            a.started = true;
            started = true;
        });
        if started {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.inputs = None;
            }
        }
    }

    /// An output chunk; `intact` says whether its data hashes to its digest
    /// (computed by the caller, outside the lock).
    pub(super) fn on_output(&mut self, sid: SessionId, c: &Chunk<'_>, intact: bool) {
        let Some(key) = self.session_key(sid) else {
            return;
        };
        if self
            .keys
            .get(&key)
            .is_some_and(|r| r.done.contains_key(&c.job))
        {
            return;
        }
        let Some(job) = self.jobs.get_mut(&c.job) else {
            self.send_error(sid, ErrorCode::UnknownJob, c.job);
            return;
        };
        let keep = job.reply.is_some();
        let Stage::Assigned(a) = &mut job.stage else {
            self.send_error(sid, ErrorCode::UnknownJob, c.job);
            return;
        };
        if a.key != key {
            self.send_error(sid, ErrorCode::UnknownJob, c.job);
            return;
        }
        if c.index == 0 && job.readback.first() == Some(&(c.stream as usize)) {
            // The upload starts (again, after a reconnect): collect afresh.
            for o in a.outputs.iter_mut() {
                *o = Vec::new();
            }
            for r in a.received.iter_mut() {
                *r = 0;
            }
            a.tree = RootBuilder::new();
            a.cursor = (0, 0);
            a.output_error = None;
            a.completed = None;
            a.failed = None;
            a.usage = None;
        }
        if a.output_error.is_some() {
            return;
        }
        let (pos, index) = a.cursor;
        let problem = match job.readback.get(pos) {
            None => Some((ErrorCode::ChunkOutOfOrder, "output past the last buffer")),
            Some(&buffer) if buffer != c.stream as usize || index != c.index => {
                Some((ErrorCode::ChunkOutOfOrder, "output chunk out of order"))
            }
            Some(&buffer) => {
                let total = job.assign.buffers.get(buffer).map_or(0, |b| b.len);
                let have = a.received.get(pos).copied().unwrap_or(total);
                let want = total.saturating_sub(have).min(CHUNK_SIZE as u64);
                if c.data.len() as u64 != want || want == 0 {
                    Some((
                        ErrorCode::ChunkOutOfOrder,
                        "output chunk of the wrong length",
                    ))
                } else if !intact {
                    Some((
                        ErrorCode::ChunkDigestMismatch,
                        "output chunk digest mismatch",
                    ))
                } else if !a.tree.push_leaf(c.digest) {
                    Some((ErrorCode::ChunkOutOfOrder, "too many output chunks"))
                } else {
                    // `have + want <= total`, a u64.
                    let now_have = have + want;
                    if let Some(r) = a.received.get_mut(pos) {
                        *r = now_have;
                    }
                    // Kept only for a requester still waiting; a late result
                    // is verified from the tree alone.
                    if keep {
                        if let Some(o) = a.outputs.get_mut(pos) {
                            o.extend_from_slice(c.data);
                        }
                    }
                    if now_have == total {
                        a.cursor = (pos + 1, 0);
                    } else {
                        a.cursor = (pos, index.saturating_add(1));
                    }
                    None
                }
            }
        };
        if let Some((code, why)) = problem {
            log::warn!(
                "job {}: {why} (stream {}, chunk {})",
                c.job,
                c.stream,
                c.index
            );
            a.output_error = Some(format!("{why} (stream {}, chunk {})", c.stream, c.index));
            self.send_error(sid, code, c.job);
        }
    }

    pub(super) fn on_receipt(&mut self, sid: SessionId, id: JobId, bytes: &[u8], now: Instant) {
        let Some(key) = self.session_key(sid) else {
            return;
        };
        let hash = Receipt::link(bytes);
        if let Some(done) = self.keys.get(&key).and_then(|r| r.done.get(&id)) {
            if done.receipt_hash == hash {
                self.stats.receipts_repeated += 1;
                if done.accepted {
                    log::info!("job {id}: receipt resent after a reconnect; acknowledged again");
                    self.send(sid, &Message::ResultAck(JobRef { job: id }));
                } else if done.refused {
                    self.send(
                        sid,
                        &Message::ResultRefuse(ResultRefuse {
                            job: id,
                            reason: ErrorCode::ReceiptRejected as u16,
                        }),
                    );
                } else {
                    self.send_error(sid, ErrorCode::ReceiptRejected, id);
                }
            } else {
                log::warn!("job {id}: a second, different receipt; rejected");
                self.stats.receipts_rejected += 1;
                self.send_error(sid, ErrorCode::ReceiptRejected, id);
            }
            return;
        }
        let tracked = self
            .jobs
            .get(&id)
            .is_some_and(|j| j.assigned_key() == Some(key));
        if !tracked {
            let Some(session) = self.sessions.get_mut(&sid) else {
                return;
            };
            session.untracked_receipts += 1;
            let n = session.untracked_receipts;
            if n > UNTRACKED_RECEIPTS {
                if n == UNTRACKED_RECEIPTS + 1 {
                    log::warn!(
                        "session {sid}: more than {UNTRACKED_RECEIPTS} receipts for jobs not \
                         assigned to {}; closing",
                        short(&key)
                    );
                    self.stats.receipts_rejected += 1;
                    self.send_error(sid, ErrorCode::ReceiptRejected, id);
                    self.goodbye(sid, GoodbyeReason::ProtocolError);
                }
                // The session is closing: the rest is not looked at.
                return;
            }
        }
        // A batch's receipts carry one statement: its signature is checked
        // once per key (the slot), each receipt's place in it every time.
        let mut spare: StatementSlot = None;
        let slot = match self.keys.get_mut(&key) {
            Some(rec) => &mut rec.statement,
            None => &mut spare,
        };
        let receipt = match Receipt::verify_cached(bytes, &key, slot) {
            Ok(r) if r.receipt().job == id => r,
            Ok(r) => {
                self.reject(
                    key,
                    id,
                    format!(
                        "the receipt sent for job {id} names job {}",
                        r.receipt().job
                    ),
                    None,
                    now,
                );
                return;
            }
            Err(e) => {
                // Not the provider's signature: the stream cannot be trusted.
                // Ending the session makes the provider send its unacknowledged
                // results again on a new one, which keeps its chain whole.
                self.reject(
                    key,
                    id,
                    format!("the receipt does not verify under the provider's key ({e:?})"),
                    None,
                    now,
                );
                self.goodbye(sid, GoodbyeReason::ProtocolError);
                return;
            }
        };
        self.chain_step(key, id, bytes.to_vec(), receipt, now);
    }

    /// Advances the key's chain over a correctly signed receipt, then settles
    /// it and any receipts that were waiting for it.
    pub(super) fn chain_step(
        &mut self,
        key: PublicKey,
        id: JobId,
        bytes: Vec<u8>,
        verified: VerifiedReceipt,
        now: Instant,
    ) {
        let mut next = Some((id, bytes, verified));
        while let Some((id, bytes, verified)) = next.take() {
            let receipt = verified.receipt();
            // Another job of this key that ended here but whose receipt has
            // not arrived may hold an earlier sequence number.
            let predecessor_pending = receipt.sequence > 1
                && self.jobs.values().any(|j| {
                    j.id != id
                        && matches!(&j.stage, Stage::Assigned(a)
                            if a.key == key && (a.completed.is_some() || a.failed.is_some()))
                });
            let Some(rec) = self.keys.get_mut(&key) else {
                return;
            };
            if rec.verifier.is_none() {
                match rec.stated {
                    // Signed after the evidence: checked from the position
                    // the evidence signed.
                    Some(stated) if receipt.sequence >= stated.next_sequence => {
                        log::info!(
                            "provider {}: anchoring on the chain position its evidence signed, #{}",
                            short(&key),
                            stated.next_sequence
                        );
                        rec.verifier = Some(ReceiptVerifier::new(key, stated));
                    }
                    _ => {
                        if predecessor_pending && rec.parked.len() < MAX_PARKED {
                            rec.parked.insert(receipt.sequence, (id, bytes, verified));
                            continue;
                        }
                        // A result signed before the evidence, with no
                        // stored position: the chain is taken from here
                        // (`--state-dir` avoids it); reaching the
                        // evidence's position with another hash is logged
                        // and counted (`chain_contradictions`).
                        log::info!(
                            "provider {}: no stored chain; anchoring at receipt #{}",
                            short(&key),
                            receipt.sequence
                        );
                        rec.verifier = Some(ReceiptVerifier::new(
                            key,
                            ChainState {
                                next_sequence: receipt.sequence,
                                prev_hash: receipt.prev_hash,
                            },
                        ));
                    }
                }
            }
            let Some(verifier) = rec.verifier.as_mut() else {
                return;
            };
            let chain = verifier.chain();
            if receipt.sequence.saturating_add(1) == chain.next_sequence
                && verified.link() == chain.prev_hash
            {
                // The last receipt this key's chain accepted, sent again (the
                // acknowledgement was lost, perhaps to a coordinator restart):
                // acknowledge it without advancing the chain.
                self.stats.receipts_repeated += 1;
                log::info!(
                    "job {id}: receipt #{} already verified; acknowledged again",
                    receipt.sequence
                );
                rec.remember(id, chain.prev_hash, true);
                self.send_to_key(&key, &Message::ResultAck(JobRef { job: id }));
                continue;
            }
            match verifier.accept(&verified, None) {
                Ok(_) => {
                    let chain = verifier.chain();
                    if rec.stated.is_some_and(|s| {
                        s.next_sequence == chain.next_sequence && s.prev_hash != chain.prev_hash
                    }) {
                        log::error!(
                            "provider {}: receipt #{} is not the one its evidence signed: \
                             a second history",
                            short(&key),
                            receipt.sequence
                        );
                        self.stats.chain_contradictions += 1;
                    }
                    self.stats.receipts_verified += 1;
                    if let Some(store) = &self.store {
                        if let Err(e) = store.save(&key, &chain) {
                            log::error!("cannot store the chain of {}: {e}", short(&key));
                        }
                    }
                    self.settle(key, id, &bytes, receipt, now);
                    if let Some(rec) = self.keys.get_mut(&key) {
                        next = rec.parked.remove(&chain.next_sequence);
                    }
                }
                Err(VerifyError::OutOfOrder) if rec.parked.len() < MAX_PARKED => {
                    log::info!(
                        "job {id}: receipt #{} waits for #{} of {}",
                        receipt.sequence,
                        verifier.chain().next_sequence,
                        short(&key)
                    );
                    rec.parked
                        .insert(receipt.sequence, (id, bytes, verified.clone()));
                }
                Err(VerifyError::Replayed) => {
                    // Signed by the key, older than the chain this
                    // coordinator holds: verified before (its
                    // acknowledgement lost in a coordinator restart, with
                    // the receipts after it). Acknowledged so the provider
                    // lets go of it; not settled again.
                    log::warn!(
                        "job {id}: receipt #{} is behind the chain of {} (#{}); acknowledged, \
                         not settled",
                        receipt.sequence,
                        short(&key),
                        verifier.chain().next_sequence
                    );
                    self.stats.receipts_repeated += 1;
                    rec.remember(id, Receipt::link(&bytes), true);
                    self.send_to_key(&key, &Message::ResultAck(JobRef { job: id }));
                }
                Err(e) => {
                    let at = verifier.chain().next_sequence;
                    self.reject(
                        key,
                        id,
                        format!(
                            "receipt #{} breaks the provider's chain at #{at} ({e:?})",
                            receipt.sequence
                        ),
                        Some(Receipt::link(&bytes)),
                        now,
                    );
                }
            }
        }
    }

    /// Rejects a job's receipt: tells the provider, and the requester if it
    /// is still waiting.
    pub(super) fn reject(
        &mut self,
        key: PublicKey,
        id: JobId,
        reason: String,
        remember: Option<Digest>,
        now: Instant,
    ) {
        log::warn!("job {id}: receipt from {} rejected: {reason}", short(&key));
        self.stats.receipts_rejected += 1;
        self.send_to_key(
            &key,
            &Message::Error(ErrorMsg {
                code: ErrorCode::ReceiptRejected as u16,
                job: id,
            }),
        );
        if let (Some(hash), Some(rec)) = (remember, self.keys.get_mut(&key)) {
            rec.remember(id, hash, false);
        }
        let ours = self
            .jobs
            .get(&id)
            .is_some_and(|j| j.assigned_key() == Some(key));
        if ours {
            self.answer(
                id,
                Response::Failed(JobFailure {
                    job: id,
                    code: FailureCode::ReceiptRejected,
                    reason,
                    receipt: None,
                    price: 0,
                    provider: None,
                }),
                now,
            );
        }
    }

    /// Answers the requester, once, and lets go of what was held for it:
    /// its inputs, and its outputs (which go with a result, their bytes
    /// counted until written).
    pub(super) fn answer(&mut self, id: JobId, response: Response, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(tx) = job.reply.take() {
            let hold = match &response {
                Response::Result(_) => {
                    self.stats.results_delivered += 1;
                    job.readback_permit.take()
                }
                Response::Failed(_) | Response::Providers(_) => {
                    self.stats.jobs_failed += 1;
                    None
                }
            };
            let response = match response {
                Response::Failed(mut f) => {
                    f.reason = bounded_reason(f.reason);
                    Response::Failed(f)
                }
                other => other,
            };
            tx.send(Answer { response, hold });
            job.answered_at = Some(now);
        }
        job.let_go();
        self.recount(id);
    }

    /// A receipt whose signature and chain position verified: check it
    /// against the job, then acknowledge and deliver, or reject.
    pub(super) fn settle(
        &mut self,
        key: PublicKey,
        id: JobId,
        bytes: &[u8],
        receipt: &Receipt,
        now: Instant,
    ) {
        let hash = Receipt::link(bytes);
        let ours = self
            .jobs
            .get(&id)
            .is_some_and(|j| j.assigned_key() == Some(key));
        if !ours {
            // Signed work we no longer track (taken elsewhere after a
            // disconnect, or long answered): acknowledge so the provider can
            // forget it; the chain has advanced over it.
            log::warn!(
                "job {id}: receipt from {} for a job not assigned to it now; acknowledged",
                short(&key)
            );
            if let Some(rec) = self.keys.get_mut(&key) {
                rec.remember(id, hash, true);
            }
            self.send_to_key(&key, &Message::ResultAck(JobRef { job: id }));
            return;
        }
        let checked = self.check_content(key, id, bytes, receipt);
        match checked {
            Ok(response) => {
                if let Some(rec) = self.keys.get_mut(&key) {
                    rec.remember(id, hash, true);
                }
                self.send_to_key(&key, &Message::ResultAck(JobRef { job: id }));
                let late = self.jobs.get(&id).is_some_and(|j| j.reply.is_none());
                if late {
                    log::warn!(
                        "job {id}: verified result arrived after the requester was answered"
                    );
                } else {
                    log::info!(
                        "job {id}: receipt #{} verified; {}",
                        receipt.sequence,
                        match &response {
                            Response::Result(_) => "result delivered",
                            Response::Failed(_) | Response::Providers(_) => "failure reported",
                        }
                    );
                }
                self.answer(id, response, now);
                self.remove_job(id);
            }
            Err(reason) => {
                // The receipt verified and the chain has advanced over it:
                // refuse the result, so the provider lets go of it.
                self.refuse(key, id, reason, hash, now);
                self.remove_job(id);
            }
        }
    }

    /// Refuses a result whose receipt verified and is in the chain but
    /// breaks the job's rules: `ResultRefuse` to the provider (which then
    /// forgets it), a failure to the requester.
    fn refuse(&mut self, key: PublicKey, id: JobId, reason: String, hash: Digest, now: Instant) {
        log::warn!("job {id}: result from {} refused: {reason}", short(&key));
        self.stats.receipts_rejected += 1;
        self.stats.results_refused += 1;
        self.send_to_key(
            &key,
            &Message::ResultRefuse(ResultRefuse {
                job: id,
                reason: ErrorCode::ReceiptRejected as u16,
            }),
        );
        if let Some(rec) = self.keys.get_mut(&key) {
            rec.remember_as(id, hash, false, true);
        }
        self.answer(
            id,
            Response::Failed(JobFailure {
                job: id,
                code: FailureCode::ReceiptRejected,
                reason,
                receipt: None,
                price: 0,
                provider: None,
            }),
            now,
        );
    }

    /// Checks a receipt whose signature and chain position verified
    /// against the job ([`job::check_receipt`]), after the outputs' own
    /// transport (every chunk in order, intact, complete), and builds the
    /// requester's answer.
    pub(super) fn check_content(
        &mut self,
        key: PublicKey,
        id: JobId,
        bytes: &[u8],
        r: &Receipt,
    ) -> Result<Response, String> {
        let Some(rec) = self.keys.get(&key) else {
            return Err("the provider's record is gone".into());
        };
        let known: Vec<Digest> = rec.evidences.iter().map(|e| e.hash).collect();
        let job = self.jobs.get_mut(&id).ok_or("unknown job")?;
        let Stage::Assigned(a) = &mut job.stage else {
            return Err("job not assigned".into());
        };
        let usage = a.usage.ok_or("no UsageReport arrived before the receipt")?;
        // The outcome message of the receipt's kind when it arrived (a
        // provider sends one), else whichever did, else none.
        let outcome = match (r.status, a.completed, a.failed) {
            (ReceiptStatus::Completed, Some(c), _) => job::Outcome::from(&c),
            (ReceiptStatus::Failed(_), _, Some(f)) => job::Outcome::from(&f),
            (_, Some(c), None) => job::Outcome::from(&c),
            (_, None, Some(f)) => job::Outcome::from(&f),
            (_, _, _) => return Err("no Completed or Failed arrived before the receipt".into()),
        };
        let received_output_root = match r.status {
            ReceiptStatus::Completed => {
                if let Some(e) = &a.output_error {
                    return Err(format!("outputs did not arrive intact: {e}"));
                }
                // Checked against the limit at submission.
                let expected = job.offer.bytes_out;
                let got = a.received.iter().fold(0u64, |n, r| n.saturating_add(*r));
                if got != expected {
                    return Err(format!("outputs incomplete: {got} of {expected} bytes"));
                }
                Some(a.tree.root())
            }
            ReceiptStatus::Failed(_) => None,
        };
        job::check_receipt(
            r,
            &job::Expected {
                assign: &job.assign,
                provider_key: &key,
                evidence: &known,
                terms: job::Terms {
                    max_price: job.offer.max_price,
                    deadline_ms: a.deadline_ms,
                    quote: Some(a.price),
                },
                reported: job::Reported::from(&usage),
                outcome,
                received_output_root,
            },
        )
        .map_err(|e| e.to_string())?;
        // `check_receipt` found it among the evidence verified for the key.
        let (evidence, challenge) = rec
            .evidences
            .iter()
            .find(|e| e.hash == r.evidence_hash)
            .map(|e| (e.bytes.clone(), e.challenge))
            .ok_or("the receipt names evidence this coordinator never verified")?;
        match r.status {
            ReceiptStatus::Completed => {
                log::debug!("job {id}: quoted {}, charged {}", a.price, r.price);
                Ok(Response::Result(JobResult {
                    job: id,
                    outputs: std::mem::take(&mut a.outputs),
                    receipt: bytes.to_vec(),
                    provider_public_key: key,
                    evidence,
                    evidence_challenge: challenge,
                    usage: r.usage,
                    price: r.price,
                }))
            }
            ReceiptStatus::Failed(reason) => {
                let detail = a.failed.map_or(0, |f| f.detail);
                let (code, what) = if reason == FailReason::Timeout {
                    (
                        FailureCode::KernelTimeout,
                        format!(
                            "the kernel ran out its time on the provider ({} us metered, \
                             deadline {} ms); charged {}, the accepted quote",
                            r.usage.gpu_time_us, a.deadline_ms, r.price
                        ),
                    )
                } else {
                    (
                        FailureCode::JobFailed,
                        format!(
                            "the provider reports: {}",
                            tessera_core::reasons::describe_failure(reason, detail)
                        ),
                    )
                };
                Ok(Response::Failed(JobFailure {
                    job: id,
                    code,
                    reason: format!("{what}, signed in receipt #{}", r.sequence),
                    receipt: Some(bytes.to_vec()),
                    price: r.price,
                    provider: Some((reason, detail)),
                }))
            }
        }
    }
}
