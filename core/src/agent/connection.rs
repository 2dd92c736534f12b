//! The session with the coordinator: connecting, the handshake (`Welcome`,
//! evidence, `Ready`), reading frames, heartbeats, draining, goodbyes and
//! disconnects.

use super::job::{Phase, Step};
use super::{
    Agent, CancelReason, ConnState, DisconnectReason, EventRecord, EVENT_RESERVE, HOST_CALL_EVENTS,
    TX_RESERVE,
};
use crate::attest::{hardware_report_nonce, Evidence, Signer, EVIDENCE_LEN};
use crate::error::{Error, InputError, PeerError, UsageError};
use crate::limits::{HEADER_LEN, MAX_EVENTS, RX_CAPACITY};
use crate::time::{Duration, Instant};
use crate::wire::{
    Batching, Blob, DecodeError, Direction, ErrorMsg, Goodbye, GoodbyeReason, Header, Heartbeat,
    Hello, JobId, JobOffer, Message, MessageType, Welcome, PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
};

/// Bodies of the frames `small_frame` takes are at most this long: an
/// offer's seven varints take at most 60 bytes, a heartbeat's 2.
const SMALL_BODY: usize = 64;

/// What `Message::decode` says of an offer or heartbeat body too long to be
/// one.
fn small_malformed(kind: u8) -> (Error, JobId) {
    let kind = MessageType::from_u8(kind).unwrap_or(MessageType::Heartbeat);
    (
        Error::Peer(PeerError::Decode(DecodeError::Malformed(kind))),
        0,
    )
}

/// Bytes of an `InputChunk`'s body before its data, at most: the job (a
/// 10-byte varint), the stream, the index (5), the digest, and the data's
/// length (a varint of up to 10 bytes).
const CHUNK_FIELDS: usize = 10 + 1 + 5 + 32 + 10;

/// How much of a frame `rx` takes at once: all of it, or of an
/// `InputChunk` its fields (its data then comes in pieces).
fn wanted(h: &Header) -> usize {
    if h.kind == MessageType::InputChunk as u8 {
        h.frame_len().min(HEADER_LEN + CHUNK_FIELDS)
    } else {
        h.frame_len()
    }
}

/// Whether a frame of this type byte is an offer or a heartbeat, which the
/// agent decodes without the `Message` enum.
fn is_small(kind: u8) -> bool {
    kind == MessageType::JobOffer as u8 || kind == MessageType::Heartbeat as u8
}

impl<S: Signer> Agent<S> {
    /// The host opened a transport to the coordinator: the agent queues `Hello`.
    /// `WouldBlock` while events wait to be read: drain `poll_event` first.
    pub fn connect(&mut self, now: Instant) -> Result<(), Error> {
        if !matches!(self.conn, ConnState::Disconnected | ConnState::Closed) {
            return Err(Error::Usage(UsageError::AlreadyConnected));
        }
        if MAX_EVENTS - self.events.len() < EVENT_RESERVE || self.data_event_queued() {
            // Events must be drained first, so none can be lost (a queued
            // `JobData` borrows the input buffer the new session reuses).
            return Err(Error::WouldBlock);
        }
        if self.batch_due.is_some() {
            // Results waiting for a batch signature are signed before the
            // new session states the chain position (`Hello`, evidence).
            self.sign_batch()?;
        }
        if self.conn == ConnState::Closed {
            // A new session after a goodbye: the drain is over.
            self.draining = false;
            self.host_drain = false;
        }
        self.heartbeat_interval = self.config.policy.heartbeat_interval;
        self.epoch = self.epoch.wrapping_add(1);
        self.reset_input();
        self.tx.clear();
        self.version = 0;
        self.batching = Batching::default();
        self.declined.clear();
        self.conn = ConnState::AwaitingWelcome;
        self.last_rx = now;
        let hello = Message::Hello(Hello {
            min_version: PROTOCOL_VERSION_MIN,
            max_version: PROTOCOL_VERSION_MAX,
            agent_version: self.config.agent_version,
            key_id: self.key_id,
            next_sequence: self.chain.next_sequence,
            prev_hash: self.chain.prev_hash,
        });
        self.enqueue(&hello)
    }

    /// The host's transport closed or failed. Jobs still receiving inputs are
    /// cancelled; running jobs go on; results wait for the next session.
    pub fn disconnected(&mut self, _now: Instant) {
        if matches!(self.conn, ConnState::Disconnected | ConnState::Closed) {
            return;
        }
        self.drop_connection();
    }

    /// Forgets partial input. A piece whose `JobData` event is still queued,
    /// or was polled, is kept until the host reads it (up to the next
    /// `handle_input`): its job may go on running (its last chunk completes
    /// the inputs), and must not run on partial inputs. Queued output stays, so that a final `Error` or `Goodbye` can
    /// still be flushed before the host closes the transport; `connect`
    /// clears it.
    fn reset_input(&mut self) {
        self.chunk_in = None;
        self.skip = 0;
        // A piece handed to the host, read or not yet, stays until the
        // next `handle_input`, as `Agent::input` promises.
        if self.rx_held && (self.data_event_queued() || self.input_view.is_some()) {
            return;
        }
        self.input_view = None;
        self.rx_held = false;
        self.rx_len = 0;
    }

    fn drop_connection(&mut self) {
        self.reset_input();
        self.conn = ConnState::Disconnected;
        if self.batch_due.is_some() {
            // Results waiting for a batch signature are signed at the next
            // timer: no job ends in a batch of a session that is over.
            self.batch_due = Some(Instant::ZERO);
        }
        let mut i = 0;
        while i < self.jobs.len() {
            let job = &mut self.jobs[i];
            let id = job.id;
            match &mut job.phase {
                Phase::Accepted => {
                    self.jobs.swap_remove(i);
                    continue;
                }
                Phase::Assigned {
                    step: Step::Receiving { failure, .. },
                    ..
                } => {
                    let host_told = failure.is_some();
                    self.jobs.swap_remove(i);
                    if !host_told {
                        self.push_event(EventRecord::CancelJob(id, CancelReason::Disconnected));
                    }
                    continue;
                }
                Phase::Assigned {
                    step: Step::AwaitingAck { unsent, .. },
                    ..
                } => *unsent = true,
                Phase::Assigned { .. } => {}
            }
            i += 1;
        }
    }

    /// Ends the connection because of `reason`: tells the host to close it.
    pub(super) fn disconnect(&mut self, reason: DisconnectReason) {
        self.drop_connection();
        self.push_event(EventRecord::Disconnect(reason));
    }

    /// Stop taking jobs, finish those in flight, then say goodbye
    /// (operator shutdown): the session ends with `Disconnect(Drained)`.
    /// A drain the coordinator asks for (its `Drain`) ends with
    /// `Disconnect(PeerDrained)` instead, unless the host asks too.
    pub fn drain(&mut self, now: Instant) -> Result<(), Error> {
        self.require_event_room(HOST_CALL_EVENTS)?;
        let before = self.host_drain;
        self.host_drain = true;
        if self.draining {
            return Ok(());
        }
        self.start_drain(now)
            .inspect_err(|_| self.host_drain = before)
    }

    /// Starts draining: `Drain` to the coordinator if `Ready`; receipts
    /// waiting for a batch are signed now.
    fn start_drain(&mut self, now: Instant) -> Result<(), Error> {
        if self.conn == ConnState::Ready {
            // Queue the notice before changing anything, so that a full queue
            // leaves the call to be repeated.
            self.enqueue(&Message::Drain)?;
        }
        self.draining = true;
        self.maybe_sign_batch(now);
        // With no job left the goodbye goes now; if the queue is full it goes
        // at the next timer (`handle_timeout` checks again).
        let _ = self.check_drained();
        Ok(())
    }

    pub(super) fn check_drained(&mut self) -> Result<(), Error> {
        if self.draining && self.conn == ConnState::Ready && self.jobs.is_empty() {
            self.enqueue(&Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Drained,
            }))?;
            self.conn = ConnState::Closed;
            let reason = if self.host_drain {
                DisconnectReason::Drained
            } else {
                DisconnectReason::PeerDrained
            };
            self.push_event(EventRecord::Disconnect(reason));
        }
        Ok(())
    }

    /// Feeds bytes received from the coordinator. Returns how many were
    /// consumed: fewer than given when the event or outgoing queue needs
    /// draining first (drain `poll_transmit` and `poll_event`, then pass the
    /// rest again). On error, `InputError::consumed` says how many bytes were
    /// used up, the offending frame included; an `Error` frame was queued for
    /// the peer, and for fatal errors the connection is ended with
    /// [`Event::Disconnect`].
    ///
    /// [`Event::Disconnect`]: super::Event::Disconnect
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<usize, InputError> {
        if !self.is_connected() {
            return Err(InputError {
                consumed: 0,
                error: Error::Usage(UsageError::NotConnected),
            });
        }
        // Bytes arrived: the peer is alive, even if the host is slow to take them.
        if !bytes.is_empty() {
            self.last_rx = now;
        }
        if self.rx_held {
            if self.data_event_queued() {
                return Ok(0);
            }
            self.input_view = None;
            self.rx_held = false;
            self.rx_len = 0;
        }
        let mut consumed = 0;
        while consumed < bytes.len() {
            if self.skip > 0 {
                consumed += self.skip_in(&bytes[consumed..]);
                continue;
            }
            if MAX_EVENTS - self.events.len() < EVENT_RESERVE || self.tx.free() < TX_RESERVE {
                break;
            }
            if self.chunk_in.is_some() {
                let (n, result) = self.take_chunk_data(now, &bytes[consumed..]);
                consumed += n;
                if let Err((error, job)) = result {
                    self.refuse(&error, job);
                    return Err(InputError { consumed, error });
                }
                if self.rx_held || !self.is_connected() {
                    break;
                }
                continue;
            }
            // A whole offer or heartbeat in the host's bytes, none buffered:
            // handled where it lies, without the copy into `rx`.
            if self.rx_len == 0 {
                let rest = &bytes[consumed..];
                if let Ok(h) = Header::decode(rest) {
                    let n = h.frame_len();
                    if is_small(h.kind) && rest.len() >= n {
                        consumed += n;
                        self.stats.frames_in += 1;
                        if let Err((error, job)) =
                            self.small_frame(now, h.kind, &rest[HEADER_LEN..n])
                        {
                            self.refuse(&error, job);
                            return Err(InputError { consumed, error });
                        }
                        if !self.is_connected() {
                            break;
                        }
                        continue;
                    }
                }
            }
            let want = match Header::decode(&self.rx[..self.rx_len]) {
                Ok(h) => wanted(&h),
                Err(_) => HEADER_LEN,
            };
            let take = want.saturating_sub(self.rx_len).min(bytes.len() - consumed);
            self.rx[self.rx_len..self.rx_len + take]
                .copy_from_slice(&bytes[consumed..consumed + take]);
            self.rx_len += take;
            consumed += take;
            if self.rx_len < HEADER_LEN {
                break;
            }
            let header = match Header::decode(&self.rx[..HEADER_LEN]) {
                Ok(h)
                    if h.kind == MessageType::InputChunk as u8 || h.frame_len() <= RX_CAPACITY =>
                {
                    h
                }
                // No valid frame to the provider but a chunk is longer than
                // `rx`: this one is refused as `Message::decode` would refuse
                // it, and its body skipped unread.
                Ok(h) => {
                    self.skip = h.frame_len() - self.rx_len;
                    self.rx_len = 0;
                    self.stats.frames_in += 1;
                    let error = Error::Peer(match MessageType::from_u8(h.kind) {
                        Some(kind) if kind.direction() == Direction::ToCoordinator => {
                            PeerError::UnexpectedMessage(kind)
                        }
                        Some(kind) => PeerError::Decode(DecodeError::Malformed(kind)),
                        None => PeerError::Decode(DecodeError::UnknownType(h.kind)),
                    });
                    self.refuse(&error, 0);
                    consumed += self.skip_in(&bytes[consumed..]);
                    return Err(InputError { consumed, error });
                }
                Err(e) => {
                    self.rx_len = 0;
                    let error = Error::Peer(PeerError::Decode(e));
                    self.refuse(&error, 0);
                    return Err(InputError { consumed, error });
                }
            };
            if self.rx_len < wanted(&header) {
                continue;
            }
            self.stats.frames_in += 1;
            let result = if header.kind == MessageType::InputChunk as u8 {
                self.start_chunk(now, header)
            } else {
                let result = self.process_frame(now, header);
                if !self.rx_held {
                    self.rx_len = 0;
                }
                result
            };
            if let Err((error, job)) = result {
                self.chunk_in = None;
                // (A piece handed over stays readable.)
                if !self.rx_held {
                    self.rx_len = 0;
                }
                self.refuse(&error, job);
                // The rest of the refused frame, as far as it is here.
                consumed += self.skip_in(&bytes[consumed..]);
                return Err(InputError { consumed, error });
            }
            if self.rx_held || !self.is_connected() {
                break;
            }
        }
        Ok(consumed)
    }

    /// Drops what of a refused frame's rest is in `bytes`; how much.
    fn skip_in(&mut self, bytes: &[u8]) -> usize {
        let n = self.skip.min(bytes.len());
        self.skip -= n;
        n
    }

    pub(super) fn is_connected(&self) -> bool {
        matches!(
            self.conn,
            ConnState::AwaitingWelcome | ConnState::AwaitingReady | ConnState::Ready
        )
    }

    /// Reports a peer error back: an `Error` frame, and for fatal errors the
    /// end of the connection.
    fn refuse(&mut self, error: &Error, job: JobId) {
        self.stats.frames_refused += 1;
        if let Some(code) = error.wire_code() {
            let _ = self.enqueue(&Message::Error(ErrorMsg {
                code: code as u16,
                job,
            }));
        }
        if error.is_fatal() {
            self.disconnect(DisconnectReason::ProtocolViolation);
        }
    }

    fn process_frame(&mut self, now: Instant, header: Header) -> Result<(), (Error, JobId)> {
        let frame_len = header.frame_len();
        if is_small(header.kind) {
            let n = frame_len - HEADER_LEN;
            let mut body = [0u8; SMALL_BODY];
            // A longer body is no offer or heartbeat: cut, it still fails
            // as malformed (trailing bytes are).
            let take = n.min(SMALL_BODY);
            body[..take].copy_from_slice(&self.rx[HEADER_LEN..HEADER_LEN + take]);
            if n > SMALL_BODY {
                return Err(small_malformed(header.kind));
            }
            return self.small_frame(now, header.kind, &body[..n]);
        }
        // Decode from a copy of the indices so `self` stays borrowable; chunk
        // data is re-sliced from `rx` when the event is polled.
        let rx = &self.rx[..frame_len];
        let msg = Message::decode(rx).map_err(|e| (Error::Peer(PeerError::Decode(e)), 0))?;
        if msg.kind().direction() == Direction::ToCoordinator {
            return Err((Error::Peer(PeerError::UnexpectedMessage(msg.kind())), 0));
        }
        match msg {
            Message::Welcome(w) => self.on_welcome(now, w).map_err(|e| (e, 0)),
            Message::Ready => self.on_ready(now).map_err(|e| (e, 0)),
            Message::Batching(b) => self.on_batching(now, b),
            Message::JobOffer(o) => self.on_offer(now, o),
            Message::JobAssign(a) => self.on_assign(a),
            Message::ResultAck(r) => self.on_ack(r.job),
            Message::Cancel(c) => self.on_cancel(c.job, c.reason),
            Message::ResultRefuse(r) => self.on_refuse(r.job, r.reason),
            Message::Heartbeat(_) => Ok(()),
            Message::Drain => {
                self.require_ready(MessageType::Drain)?;
                if self.draining {
                    return Ok(());
                }
                self.start_drain(now).map_err(|e| (e, 0))
            }
            Message::Goodbye(_) => {
                self.disconnect(DisconnectReason::PeerGoodbye);
                self.conn = ConnState::Closed;
                Ok(())
            }
            Message::Error(e) => {
                if self.conn == ConnState::Ready {
                    self.push_event(EventRecord::PeerError(e.code, e.job));
                } else {
                    self.disconnect(DisconnectReason::Refused(e.code));
                }
                Ok(())
            }
            other => Err((Error::Peer(PeerError::UnexpectedMessage(other.kind())), 0)),
        }
    }

    /// An offer or a heartbeat (`is_small`), decoded straight into its
    /// struct: the frames of a busy session. The `Message` enum is as large
    /// as its largest variant (an assignment), and moving it cost a fifth of
    /// a frame's handling. The same checks as `Message::decode`.
    fn small_frame(&mut self, now: Instant, kind: u8, body: &[u8]) -> Result<(), (Error, JobId)> {
        let malformed = |e| (Error::Peer(PeerError::Decode(e)), 0);
        if kind == MessageType::JobOffer as u8 {
            let offer = JobOffer::decode_body(body)
                .ok_or(DecodeError::Malformed(MessageType::JobOffer))
                .map_err(malformed)?;
            self.on_offer(now, offer)
        } else if kind == MessageType::Heartbeat as u8 {
            Heartbeat::decode_body(body)
                .ok_or(DecodeError::Malformed(MessageType::Heartbeat))
                .map_err(malformed)?;
            Ok(())
        } else {
            Err((
                Error::Peer(PeerError::Decode(DecodeError::UnknownType(kind))),
                0,
            ))
        }
    }

    pub(super) fn require_ready(&self, kind: MessageType) -> Result<(), (Error, JobId)> {
        if self.conn == ConnState::Ready {
            Ok(())
        } else {
            Err((Error::Peer(PeerError::UnexpectedMessage(kind)), 0))
        }
    }

    fn on_welcome(&mut self, now: Instant, w: Welcome) -> Result<(), Error> {
        if self.conn != ConnState::AwaitingWelcome {
            return Err(Error::Peer(PeerError::UnexpectedMessage(
                MessageType::Welcome,
            )));
        }
        if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION_MAX).contains(&w.version) {
            return Err(Error::Peer(PeerError::UnsupportedVersion(w.version)));
        }
        self.version = w.version;
        // Per session: 0 means the provider's own setting, whatever an
        // earlier session's coordinator asked for.
        self.heartbeat_interval = if w.heartbeat_ms > 0 {
            Duration::from_millis(w.heartbeat_ms as u64)
        } else {
            self.config.policy.heartbeat_interval
        };
        let public_key = self.signer.public_key();
        let nonce = hardware_report_nonce(&w.challenge, &public_key, &self.session_key);
        let evidence = Evidence {
            challenge: w.challenge,
            public_key,
            agent_version: self.config.agent_version,
            boot_id: self.config.boot_id,
            issued_at: now.micros,
            chain: self.chain,
            capabilities: self.config.capabilities.clone(),
            enc_key: self.session_key,
            hardware_report: self.signer.hardware_report(&nonce),
        };
        let mut signed = [0u8; EVIDENCE_LEN];
        let n = evidence
            .sign(&mut self.signer, &mut signed)
            .map_err(Error::Signer)?;
        self.evidence_hash = Evidence::hash(&signed[..n]);
        self.enqueue(&Message::Evidence(Blob {
            bytes: &signed[..n],
        }))?;
        self.conn = ConnState::AwaitingReady;
        Ok(())
    }

    fn on_ready(&mut self, now: Instant) -> Result<(), Error> {
        if self.conn != ConnState::AwaitingReady {
            return Err(Error::Peer(PeerError::UnexpectedMessage(
                MessageType::Ready,
            )));
        }
        self.conn = ConnState::Ready;
        self.next_heartbeat = now + self.heartbeat_interval;
        self.push_event(EventRecord::Ready);
        for i in 0..self.jobs.len() {
            self.start_resend(i);
        }
        if self.draining {
            self.enqueue(&Message::Drain)?;
        }
        self.flush_outcomes();
        self.check_drained()
    }

    /// The provider's heartbeat now: jobs held, and the capacity it offers.
    pub(super) fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            active_jobs: self.jobs.len() as u8,
            capacity: if self.device_available {
                self.config.policy.max_concurrent
            } else {
                0
            },
        }
    }
}
