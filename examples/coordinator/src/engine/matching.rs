//! Matching jobs to providers: candidates, offers, declines.

use super::*;

impl Engine {
    /// Whether the provider `key` may be offered a job sealed for
    /// `sealed_for` (provider, session key): always for a job in the clear;
    /// for a sealed one, only that provider, in a version 3 session whose
    /// evidence stated that session key.
    pub(super) fn takes_sealed(
        &self,
        key: &PublicKey,
        sealed_for: Option<(PublicKey, [u8; 32])>,
    ) -> bool {
        let Some((provider, enc_key)) = sealed_for else {
            return true;
        };
        let Some(rec) = self.keys.get(key) else {
            return false;
        };
        let version = rec
            .session
            .and_then(|sid| self.sessions.get(&sid))
            .map_or(0, |s| s.version);
        *key == provider && rec.enc_key == enc_key && version >= PROTOCOL_VERSION_3
    }

    /// The providers a requester may seal jobs to now: ready, not
    /// draining, speaking version 3, with a session key in their evidence;
    /// each with that evidence (at most
    /// [`MAX_PROVIDERS_LISTED`](crate::protocol::MAX_PROVIDERS_LISTED)).
    pub(crate) fn sealed_providers(&self) -> Vec<crate::protocol::ProviderEntry> {
        let mut out = Vec::new();
        let mut sids: Vec<&SessionId> = self.sessions.keys().collect();
        sids.sort();
        for sid in sids {
            let s = &self.sessions[sid];
            let Phase::Ready { key } = s.phase else {
                continue;
            };
            if s.draining || s.version < PROTOCOL_VERSION_3 {
                continue;
            }
            let Some(rec) = self.keys.get(&key) else {
                continue;
            };
            let Some(e) = rec.evidences.back() else {
                continue;
            };
            if rec.enc_key == [0; 32] {
                continue;
            }
            out.push(crate::protocol::ProviderEntry {
                evidence: e.bytes.clone(),
                challenge: e.challenge,
                load: s.load.map_or((0, 0), |h| (h.active_jobs, h.capacity)),
            });
            if out.len() == crate::protocol::MAX_PROVIDERS_LISTED {
                break;
            }
        }
        out
    }

    /// Ready, non-draining providers whose device meets `req`, cheapest last
    /// quote first (unknown quotes first of all, to learn them), rotating
    /// among equals.
    pub(super) fn capable(&mut self, req: &tessera_core::wire::Requirements) -> Vec<PublicKey> {
        let mut found: Vec<(SessionId, PublicKey, u64)> = Vec::new();
        for (sid, s) in &self.sessions {
            let Phase::Ready { key } = s.phase else {
                continue;
            };
            let Some(rec) = self.keys.get(&key) else {
                continue;
            };
            if !s.takes_offers() || !meets(&rec.capabilities, req) {
                continue;
            }
            if let Some(h) = s.load {
                if h.active_jobs >= h.capacity {
                    // Full at its last heartbeat, or its device unavailable
                    // (capacity 0): last resort.
                    found.push((*sid, key, u64::MAX));
                    continue;
                }
            }
            found.push((*sid, key, rec.last_quote.unwrap_or(0)));
        }
        found.sort_by_key(|(sid, _, _)| *sid);
        if !found.is_empty() {
            let n = found.len();
            found.rotate_left(self.rotation % n);
        }
        self.rotation = self.rotation.wrapping_add(1);
        found.sort_by_key(|(_, _, quote)| *quote);
        found.into_iter().map(|(_, key, _)| key).collect()
    }

    /// Takes a requester's job, checked and hashed already, and offers it to
    /// the first candidate. The answer comes on `reply`. Returns the job's
    /// id (`None` when refused before one was given).
    pub(crate) fn submit(&mut self, job: Prepared, reply: Reply, now: Instant) -> Option<JobId> {
        self.stats.jobs_submitted += 1;
        if self.shut_down {
            self.stats.jobs_failed += 1;
            reply.send(Answer {
                response: Response::Failed(JobFailure {
                    job: 0,
                    code: FailureCode::Shutdown,
                    reason: "the coordinator is shutting down".into(),
                    receipt: None,
                    price: 0,
                    provider: None,
                }),
                hold: None,
            });
            return None;
        }
        let id = self.next_job;
        self.next_job = self.next_job.wrapping_add(1).max(1);
        let Prepared {
            mut assign,
            mut offer,
            readback,
            inputs,
            readback_permit,
            sealed_for,
        } = job;
        assign.job = id;
        offer.job = id;
        let candidates: VecDeque<PublicKey> = self
            .capable(&offer.requirements)
            .into_iter()
            .filter(|k| self.takes_sealed(k, sealed_for))
            .collect();
        let wait = Duration::from_millis(u64::from(offer.deadline_ms))
            .saturating_add(self.settings.deadline_grace);
        // Far beyond any real deadline when the clock cannot add it.
        let deadline = now
            .checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        log::info!(
            "job {id}: submitted ({} B kernel, {} buffers, {} B in, {} B out, max price {}), \
             {} candidate(s)",
            assign.kernel.len,
            assign.buffers.len(),
            offer.bytes_in,
            offer.bytes_out,
            offer.max_price,
            candidates.len()
        );
        self.jobs.insert(
            id,
            Job {
                id,
                assign,
                offer,
                readback,
                inputs: Some(inputs),
                readback_permit: Some(readback_permit),
                submitted: now,
                deadline,
                reply: Some(reply),
                answered_at: None,
                // Replaced by `offer_next` before anyone looks.
                stage: Stage::Offering {
                    key: [0; 32],
                    session: 0,
                    since: now,
                    deadline_ms: 0,
                    assigned: false,
                },
                candidates,
                excluded: HashSet::new(),
                declines: Vec::new(),
                full_declines: HashMap::new(),
                lost: HashMap::new(),
                sealed_for,
                wants_room: false,
                in_queue: false,
                counted: None,
            },
        );
        self.offer_next(id, now);
        Some(id)
    }

    /// Offers the job to its next candidate, or answers the requester that
    /// nobody took it.
    pub(super) fn offer_next(&mut self, id: JobId, now: Instant) {
        loop {
            let Some(job) = self.jobs.get_mut(&id) else {
                return;
            };
            let Some(key) = job.candidates.pop_front() else {
                break;
            };
            let sealed_for = job.sealed_for;
            if !self.takes_sealed(&key, sealed_for) {
                // Reconnected with another session key since: the job is
                // not sealed to it.
                continue;
            }
            let Some(sid) = self.keys.get(&key).and_then(|r| r.session) else {
                continue;
            };
            let Some(session) = self.sessions.get(&sid) else {
                continue;
            };
            if !session.takes_offers() {
                continue;
            }
            if self.room(&key) == Some(0) {
                // Full with this coordinator's jobs: it would decline.
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.wants_room = true;
                }
                continue;
            }
            let Some(job) = self.jobs.get_mut(&id) else {
                return;
            };
            let Some(session) = self.sessions.get(&sid) else {
                continue;
            };
            let elapsed = now.saturating_duration_since(job.submitted).as_millis();
            let elapsed = u32::try_from(elapsed).unwrap_or(u32::MAX);
            let mut offer = job.offer;
            offer.deadline_ms = job.offer.deadline_ms.saturating_sub(elapsed).max(1);
            // A small job goes to a version 2 provider with its offer.
            let with_offer = session.version >= PROTOCOL_VERSION_2
                && job.assign.bytes_in() <= ASSIGN_WITH_OFFER_MAX
                && job.inputs.is_some();
            job.stage = Stage::Offering {
                key,
                session: sid,
                since: now,
                deadline_ms: offer.deadline_ms,
                assigned: with_offer,
            };
            let with_offer = with_offer.then(|| (job.assign.clone(), job.inputs.clone()));
            log::debug!("job {id}: offered to {}", short(&key));
            self.recount(id);
            self.send(sid, &Message::JobOffer(offer));
            if let Some((assign, inputs)) = with_offer {
                self.send(sid, &Message::JobAssign(assign));
                if let (Some(s), Some(inputs)) = (self.sessions.get(&sid), inputs) {
                    s.outbox.send_inputs(InputStream::new(&inputs, id));
                }
            }
            return;
        }
        if let Some(job) = self.jobs.get_mut(&id) {
            let retry = job.lost.iter().any(|(k, _)| !job.excluded.contains(k));
            if (retry || job.wants_room) && now < job.deadline {
                // Lost to a dropped connection, or every provider that could
                // run it is full: wait for a provider to come (back) or for
                // a slot; the deadline still bounds the wait.
                if job.wants_room {
                    log::debug!("job {id}: waiting for a free slot");
                    if !job.in_queue {
                        job.in_queue = true;
                        self.queued.push_back(id);
                    }
                } else {
                    log::info!("job {id}: waiting for a provider to reconnect");
                }
                job.stage = Stage::Waiting;
                self.recount(id);
                return;
            }
        }
        let Some(job) = self.remove_job(id) else {
            return;
        };
        let (code, reason) =
            if let (Some((provider, _)), true) = (job.sealed_for, job.declines.is_empty()) {
                (
                    FailureCode::ProviderUnavailable,
                    format!(
                        "provider {} is not connected with the session key the job is sealed to; \
                     list the providers and seal the job again",
                        hex(&key_id(&provider)[..6])
                    ),
                )
            } else if job.declines.is_empty() {
                (
                    FailureCode::NoCapableProvider,
                    format!(
                    "no connected provider meets the requirements (memory {} MiB, features {:#x})",
                    job.offer.requirements.memory_mib, job.offer.requirements.features
                ),
                )
            } else {
                let mut list: Vec<String> = job
                    .declines
                    .iter()
                    .take(DECLINES_LISTED)
                    .map(|(k, why)| format!("{}: {why}", hex(&k[..6])))
                    .collect();
                if job.declines.len() > DECLINES_LISTED {
                    list.push(format!("and {} more", job.declines.len() - DECLINES_LISTED));
                }
                (
                    FailureCode::AllDeclined,
                    bounded_reason(format!("no provider took the job ({})", list.join("; "))),
                )
            };
        log::info!("job {id}: {reason}");
        self.stats.jobs_failed += 1;
        if let Some(tx) = job.reply {
            tx.send(Answer {
                response: Response::Failed(JobFailure {
                    job: id,
                    code,
                    reason,
                    receipt: None,
                    price: 0,
                    provider: None,
                }),
                hold: None,
            });
        }
    }

    /// The provider key, the offer's deadline, and whether the assignment
    /// went with it, of a job on offer on `sid`.
    pub(super) fn offering(&self, sid: SessionId, id: JobId) -> Option<(PublicKey, u32, bool)> {
        match self.jobs.get(&id)?.stage {
            Stage::Offering {
                key,
                session,
                deadline_ms,
                assigned,
                ..
            } if session == sid => Some((key, deadline_ms, assigned)),
            _ => None,
        }
    }

    pub(super) fn on_accept(&mut self, sid: SessionId, id: JobId, price: u64, now: Instant) {
        let Some((key, deadline_ms, sent)) = self.offering(sid, id) else {
            // A late answer to an offer that timed out: withdraw it.
            log::debug!("session {sid}: acceptance of job {id} not on offer; cancelling");
            self.send(
                sid,
                &Message::Cancel(Cancel {
                    job: id,
                    reason: CANCEL_OFFER_WITHDRAWN,
                }),
            );
            return;
        };
        // The evidence of the session accepting it: what its receipt names.
        let evidence = self
            .keys
            .get(&key)
            .and_then(|rec| rec.evidences.back())
            .map(|e| e.hash);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if price > job.offer.max_price || job.reply.is_none() {
            self.send(
                sid,
                &Message::Cancel(Cancel {
                    job: id,
                    reason: CANCEL_PRICE_OVER_MAXIMUM,
                }),
            );
            self.on_decline(
                sid,
                id,
                format!("price {price} over the maximum"),
                false,
                now,
            );
            return;
        }
        let inputs = job.inputs.clone();
        if inputs.is_none() && !sent {
            // Inputs go only once a provider started or the requester was
            // answered, and neither is the case for a job on offer.
            log::error!("job {id}: inputs already released; withdrawing the offer");
            self.send(
                sid,
                &Message::Cancel(Cancel {
                    job: id,
                    reason: CANCEL_OFFER_WITHDRAWN,
                }),
            );
            return;
        };
        job.stage = Stage::Assigned(Box::new(Assigned {
            key,
            evidence,
            price,
            deadline_ms,
            started: false,
            outputs: job.readback.iter().map(|_| Vec::new()).collect(),
            received: job.readback.iter().map(|_| 0).collect(),
            tree: RootBuilder::new(),
            cursor: (0, 0),
            output_error: None,
            completed: None,
            failed: None,
            usage: None,
        }));
        let assign = job.assign.clone();
        self.recount(id);
        if let Some(rec) = self.keys.get_mut(&key) {
            rec.last_quote = Some(price);
        }
        log::info!("job {id}: accepted by {} at {price}", short(&key));
        if sent {
            // The assignment and inputs went with the offer.
            return;
        }
        self.send(sid, &Message::JobAssign(assign));
        if let (Some(s), Some(inputs)) = (self.sessions.get(&sid), inputs) {
            s.outbox.send_inputs(InputStream::new(&inputs, id));
        }
    }

    /// The provider declined the job: it goes to the next candidate. A
    /// provider that was full (`at_capacity`) may be offered it again once
    /// one of its jobs here ends; any other reason excludes it.
    pub(super) fn on_decline(
        &mut self,
        sid: SessionId,
        id: JobId,
        why: String,
        at_capacity: bool,
        now: Instant,
    ) {
        let Some((key, _, _)) = self.offering(sid, id) else {
            return;
        };
        if at_capacity {
            // It holds at most the jobs it has here besides this one (and
            // maybe results from before): room comes when one of them ends.
            let holds = self.in_flight_with(&key, Some(id));
            if let Some(rec) = self.keys.get_mut(&key) {
                rec.full_at = Some(holds);
            }
        }
        if let Some(job) = self.jobs.get_mut(&id) {
            log::info!("job {id}: declined by {}: {why}", short(&key));
            // Full, it may take the job later; a provider that says so
            // again and again (however much room its heartbeats show) is
            // not offered the job any more.
            let full = if at_capacity {
                let n = job.full_declines.entry(key).or_insert(0);
                *n += 1;
                *n
            } else {
                0
            };
            if at_capacity && full < MAX_CAPACITY_DECLINES {
                job.wants_room = true;
            } else {
                job.excluded.insert(key);
            }
            job.declines.push((key_id(&key), why));
        }
        self.offer_next(id, now);
    }

    /// This coordinator's jobs on offer to or run by `key` and not yet
    /// answered, leaving `except` out ([`Engine::held`]).
    pub(super) fn in_flight_with(&self, key: &PublicKey, except: Option<JobId>) -> usize {
        let held = self.held.get(key).copied().unwrap_or(0);
        let counted = except
            .and_then(|id| self.jobs.get(&id))
            .is_some_and(|j| j.counted.as_ref() == Some(key));
        held - usize::from(counted)
    }

    /// How many more jobs `key` may be offered now: its capacity (from its
    /// last heartbeat, or [`CAPACITY_BEFORE_HEARTBEAT`] before one), or
    /// fewer after it declined for capacity, less the jobs it has here.
    /// `None` while its device is unavailable (capacity 0): it says so
    /// itself when offered.
    pub(super) fn room(&self, key: &PublicKey) -> Option<usize> {
        self.room_with(key, self.in_flight_with(key, None))
    }

    /// [`Engine::room`] for a provider with `in_flight` jobs here.
    pub(super) fn room_with(&self, key: &PublicKey, in_flight: usize) -> Option<usize> {
        let rec = self.keys.get(key)?;
        let session = rec.session.and_then(|sid| self.sessions.get(&sid))?;
        let capacity = session.load.map_or(CAPACITY_BEFORE_HEARTBEAT, |h| {
            usize::from(h.capacity).min(MAX_JOBS)
        });
        if capacity == 0 {
            return None;
        }
        let limit = rec.full_at.map_or(capacity, |f| f.min(capacity));
        Some(limit.saturating_sub(in_flight))
    }

    /// Whether `key` (ready, not draining) could run job `job`: its device
    /// meets the requirements, it was not excluded, and a sealed job is
    /// sealed to it.
    fn could_run(&self, key: &PublicKey, job: &Job) -> bool {
        let Some(rec) = self.keys.get(key) else {
            return false;
        };
        let ready = rec
            .session
            .and_then(|sid| self.sessions.get(&sid))
            .is_some_and(Session::takes_offers);
        ready
            && meets(&rec.capabilities, &job.offer.requirements)
            && !job.excluded.contains(key)
            && self.takes_sealed(key, job.sealed_for)
    }

    /// Offers the oldest queued jobs `key` could run, as many as it has
    /// room for, looking at the first [`WAKE_SCAN`] entries; the rest keep
    /// their places.
    pub(super) fn wake_queued(&mut self, key: &PublicKey, now: Instant) {
        if self.queued.is_empty() {
            return;
        }
        let mut room = self.room(key).unwrap_or(0);
        if room == 0 {
            return;
        }
        let mut kept = VecDeque::new();
        let mut wake = Vec::new();
        let mut looked = 0;
        while let Some(id) = self.queued.pop_front() {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let live = matches!(job.stage, Stage::Waiting) && job.reply.is_some() && job.wants_room;
            if live && !(room > 0 && now < job.deadline && self.could_run(key, job)) {
                kept.push_back(id);
            } else {
                if live {
                    room -= 1;
                    wake.push(id);
                }
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.in_queue = false;
                }
            }
            looked += 1;
            if room == 0 || looked == WAKE_SCAN {
                break;
            }
        }
        // Those kept go back in front, in their order.
        while let Some(id) = kept.pop_back() {
            self.queued.push_front(id);
        }
        for id in wake {
            self.reoffer(id, now);
        }
    }
}
