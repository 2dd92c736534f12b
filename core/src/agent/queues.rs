//! What the host drains: the outgoing bytes, the event queue, and the
//! timers.

use super::job::{PendingFailure, Step};
use super::{
    Agent, CancelReason, ConnState, DisconnectReason, Event, EventRecord, DISCONNECT_EVENTS,
    TIMER_EVENTS,
};
use crate::attest::Signer;
use crate::error::Error;
use crate::limits::{MAX_EVENTS, TX_CAPACITY};
use crate::time::Instant;
use crate::wire::{DeclineReason, EncodeError, FailReason, JobId, Message, Usage};

impl<S: Signer> Agent<S> {
    /// Queues one frame for the coordinator; `WouldBlock` if it does not fit.
    pub(super) fn enqueue(&mut self, msg: &Message<'_>) -> Result<(), Error> {
        self.tx.push(msg)
    }

    /// Copies queued outgoing bytes into `out`; returns how many, or `None`
    /// when nothing is queued. Call until `None` after every other call.
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut [u8]) -> Option<usize> {
        self.flush_outcomes();
        self.tx.pop(out)
    }

    /// Bytes waiting in the outgoing queue.
    pub fn pending_transmit(&self) -> usize {
        self.tx.len()
    }

    /// The next thing the host must do, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        let record = self.events.pop_front()?;
        Some(match record {
            EventRecord::Ready => Event::Ready,
            EventRecord::JobAssigned(job) => Event::JobAssigned { job },
            EventRecord::JobData {
                job,
                stream,
                offset,
                len,
            } => {
                // The piece ends `rx`; `input` checks the bounds again.
                self.input_view = Some((job, self.rx_len.saturating_sub(len), len));
                Event::JobData {
                    job,
                    stream,
                    offset,
                    len,
                }
            }
            EventRecord::RunJob(job) => Event::RunJob { job },
            EventRecord::CancelJob(job, reason) => Event::CancelJob { job, reason },
            EventRecord::ResendOutputs(job) => Event::ResendOutputs { job },
            EventRecord::PersistResult(job) => Event::PersistResult { job },
            EventRecord::ResultAcknowledged(job) => Event::ResultAcknowledged { job },
            EventRecord::ResultRefused(job, reason) => Event::ResultRefused { job, reason },
            EventRecord::PeerError(code, job) => Event::PeerError { code, job },
            EventRecord::Disconnect(reason) => Event::Disconnect { reason },
        })
    }

    pub(super) fn push_event(&mut self, e: EventRecord) {
        // Cannot fail: every caller checked the room first (see
        // `DISCONNECT_EVENTS`); tests and fuzzing run with this assertion.
        let pushed = self.events.push_back(e);
        debug_assert!(pushed.is_ok(), "event queue sized too small");
    }

    /// Free event slots.
    fn event_room(&self) -> usize {
        MAX_EVENTS - self.events.len()
    }

    /// `EventsPending` unless `n` events fit and leave room for a disconnect.
    pub(super) fn require_event_room(&self, n: usize) -> Result<(), Error> {
        if self.event_room() < n + DISCONNECT_EVENTS {
            return Err(Error::EventsPending);
        }
        Ok(())
    }

    pub(super) fn data_event_queued(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, EventRecord::JobData { .. }))
    }

    /// When the host must next call `handle_timeout`, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        if self.is_connected() {
            consider(self.last_rx + self.config.policy.peer_timeout);
        }
        if self.conn == ConnState::Ready {
            consider(self.next_heartbeat);
        }
        for job in self
            .jobs
            .iter()
            .filter(|j| j.has_deadline() || j.failure().is_some())
        {
            consider(job.deadline);
        }
        if let Some(due) = self.batch_due {
            consider(due);
        }
        next
    }

    /// Runs the timers due at `now`: heartbeats, peer silence, job deadlines.
    ///
    /// While the host leaves more than 30 events unread (18 without `std`:
    /// `MAX_EVENTS` less the most the timers and a disconnect queue) the
    /// timers wait; nothing is lost: [`Agent::poll_timeout`] still says they
    /// are due. Read events with [`Agent::poll_event`], then call again.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.event_room() < TIMER_EVENTS + DISCONNECT_EVENTS {
            return;
        }
        let mut i = 0;
        while i < self.jobs.len() {
            let job = &self.jobs[i];
            if let Some(&PendingFailure {
                reason,
                detail,
                usage,
            }) = job.failure()
            {
                if now >= job.deadline {
                    self.end_failed_or_retry(now, i, reason, detail, usage);
                }
                i += 1;
                continue;
            }
            if !job.has_deadline() || now < job.deadline {
                i += 1;
                continue;
            }
            let id = job.id;
            let (reason, usage) = match job.step() {
                None => {
                    // Never assigned: nothing to sign, the host never saw it.
                    self.jobs.swap_remove(i);
                    continue;
                }
                // The kernel never ran: nothing is charged.
                Some(Step::Receiving { .. }) => (FailReason::DeadlineExceeded, Usage::default()),
                // The kernel ran out its time: metered to the deadline and
                // charged the quote, as when the host reports the timeout.
                Some(Step::Running { started_at, .. } | Step::Uploading { started_at, .. }) => (
                    FailReason::Timeout,
                    Usage {
                        gpu_time_us: job.time_to_deadline(*started_at),
                        ..Usage::default()
                    },
                ),
                // Signed already: no deadline.
                Some(Step::Resending { .. } | Step::AwaitingAck { .. }) => {
                    i += 1;
                    continue;
                }
            };
            self.push_event(EventRecord::CancelJob(id, CancelReason::Deadline));
            self.end_failed_or_retry(now, i, reason, 0, usage);
            i += 1;
        }
        self.maybe_sign_batch(now);
        if self.is_connected() && now >= self.last_rx + self.config.policy.peer_timeout {
            self.disconnect(DisconnectReason::PeerSilent);
            return;
        }
        if self.conn == ConnState::Ready && now >= self.next_heartbeat {
            let hb = Message::Heartbeat(self.heartbeat());
            // A full queue already tells the peer we are alive.
            let _ = self.enqueue(&hb);
            self.next_heartbeat = now + self.heartbeat_interval;
        }
        let _ = self.check_drained();
    }
}

/// Encoded frames waiting to be sent, oldest first.
pub(super) struct TxQueue {
    bytes: [u8; TX_CAPACITY],
    /// The queued bytes are `bytes[start..end]`.
    start: usize,
    end: usize,
    /// Frames queued since the agent was made.
    frames: u64,
}

impl TxQueue {
    pub(super) fn new() -> Self {
        TxQueue {
            bytes: [0; TX_CAPACITY],
            start: 0,
            end: 0,
            frames: 0,
        }
    }

    /// Bytes queued.
    pub(super) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Bytes that can still be queued.
    pub(super) fn free(&self) -> usize {
        TX_CAPACITY - self.len()
    }

    /// Frames queued since the agent was made.
    pub(super) fn frames(&self) -> u64 {
        self.frames
    }

    /// Drops everything queued.
    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Counts a frame written outside the queue (an output chunk).
    pub(super) fn count_frame(&mut self) {
        self.frames += 1;
    }

    /// Queues one frame; `WouldBlock` if it does not fit.
    pub(super) fn push(&mut self, msg: &Message<'_>) -> Result<(), Error> {
        self.push_with(|room| msg.encode(room))
    }

    /// Queues the reply to an offer (`encode_offer_reply`); `WouldBlock`
    /// if it does not fit.
    pub(super) fn push_offer_reply(
        &mut self,
        job: JobId,
        reply: Result<u64, DeclineReason>,
    ) -> Result<(), Error> {
        self.push_with(|room| crate::wire::encode_offer_reply(job, reply, room))
    }

    /// Queues the frame `encode` writes into the free room (returning its
    /// length); `WouldBlock` if it does not fit.
    fn push_with(
        &mut self,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
    ) -> Result<(), Error> {
        if self.start > 0 {
            // At most TX_CAPACITY bytes move, and only while the host has
            // not drained the queue.
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match encode(&mut self.bytes[self.end..]) {
            Ok(n) => {
                self.end += n;
                self.frames += 1;
                Ok(())
            }
            Err(_) => Err(Error::WouldBlock),
        }
    }

    /// Moves the oldest queued bytes into `out`; how many, or `None` when
    /// nothing is queued.
    pub(super) fn pop(&mut self, out: &mut [u8]) -> Option<usize> {
        let n = self.len().min(out.len());
        if n == 0 {
            return None;
        }
        out[..n].copy_from_slice(&self.bytes[self.start..self.start + n]);
        self.start += n;
        if self.start == self.end {
            self.clear();
        }
        Some(n)
    }
}
