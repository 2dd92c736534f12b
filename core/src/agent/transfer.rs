//! Jobs coming in: offers, assignments, the kernel and input chunks (and
//! the host reading them), and the coordinator's cancellations.

use super::job::{Input, Job, Phase, Received, Step};
use super::{Agent, CancelReason, EventRecord};
use crate::attest::Signer;
use crate::e2e::{output_plain_len, plain_len};
use crate::error::{Error, ErrorCode, PeerError, UsageError};
use crate::limits::{
    CHUNK_SIZE, HEADER_LEN, MAX_BINDINGS, MAX_INPUT_PIECE, MAX_KERNEL_BYTES, RX_CAPACITY,
};
use crate::time::{Duration, Instant};
use crate::wire::{
    DecodeError, Digest, ErrorMsg, FailReason, Header, JobAssign, JobId, JobOffer, JobRef, Message,
    MessageType, Sealing, Usage, PROTOCOL_VERSION_2, PROTOCOL_VERSION_3,
};

/// The `InputChunk` whose data is arriving: what its pieces are checked
/// against.
pub(super) struct InStream {
    job: JobId,
    stream: u8,
    /// Where in the stream the piece in `rx` starts.
    offset: u64,
    /// Data bytes of the frame still to come.
    left: usize,
    digest: Digest,
    /// The leaf hash of the data so far.
    hasher: crate::crypto::Sha256,
}

impl<S: Signer> Agent<S> {
    pub(super) fn on_offer(&mut self, now: Instant, offer: JobOffer) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::JobOffer)?;
        let decision = if self.find(offer.job).is_some() {
            Err(crate::wire::DeclineReason::DuplicateJob)
        } else {
            self.config.policy.evaluate(
                &offer,
                &self.config.capabilities,
                self.jobs.len(),
                self.draining,
                self.device_available,
            )
        };
        let reply = match decision {
            Ok(price) => {
                let deadline = now + Duration::from_millis(offer.deadline_ms as u64);
                let evidence = self.evidence_hash;
                if self
                    .jobs
                    .push(Job::new(&offer, price, deadline, evidence))
                    .is_err()
                {
                    // Policy already bounds this by MAX_JOBS.
                    Err(crate::wire::DeclineReason::AtCapacity)
                } else {
                    self.stats.offers_accepted += 1;
                    Ok(price)
                }
            }
            Err(reason) => {
                self.stats.offers_declined += 1;
                if self.version >= PROTOCOL_VERSION_2 {
                    // Its assignment may follow (sent with the offer).
                    if self.declined.is_full() {
                        self.declined.pop_front();
                    }
                    let _ = self.declined.push_back(offer.job);
                }
                Err(reason)
            }
        };
        self.tx
            .push_offer_reply(offer.job, reply)
            .map_err(|e| (e, offer.job))
    }

    pub(super) fn on_assign(&mut self, a: JobAssign) -> Result<(), (Error, JobId)> {
        let kind = if a.sealing.is_some() {
            MessageType::SealedJobAssign
        } else {
            MessageType::JobAssign
        };
        self.require_ready(kind)?;
        let id = a.job;
        if a.sealing.is_some() && self.version < PROTOCOL_VERSION_3 {
            return Err((Error::Peer(PeerError::UnexpectedMessage(kind)), id));
        }
        if self.declined_lately(id) {
            // Sent with an offer this session declined: dropped.
            return Ok(());
        }
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        let job = &mut self.jobs[i];
        if !matches!(job.phase, Phase::Accepted) {
            return Err((
                Error::Peer(PeerError::UnexpectedMessage(MessageType::JobAssign)),
                id,
            ));
        }
        let sealing_ok = match &a.sealing {
            None => true,
            // A sealed job needs the session key the evidence stated.
            Some(sealing) => self.session_key != [0; 32] && sealing_is_sane(&a, sealing),
        };
        if !sealing_ok || !assignment_is_sane(&a, job.bytes_in, job.bytes_out) {
            self.jobs.swap_remove(i);
            return Err((Error::Peer(PeerError::BadAssignment(id)), id));
        }
        job.phase = Phase::Assigned {
            spec: a,
            step: Step::Receiving {
                input: Input::new(),
                failure: None,
            },
        };
        self.push_event(EventRecord::JobAssigned(id));
        // A kernel is never empty, so inputs always follow.
        Ok(())
    }

    /// A job this session declined lately and does not hold (version 2):
    /// its assignment and inputs, sent with the offer, are dropped quietly.
    fn declined_lately(&self, id: JobId) -> bool {
        self.find(id).is_none() && self.declined.iter().any(|&d| d == id)
    }

    /// The start of an `InputChunk` is in `rx` (`header`, then its fields
    /// and perhaps some data): checks it against what the job expects and
    /// starts taking its data. On an error the rest of the frame is to be
    /// skipped (`skip`).
    pub(super) fn start_chunk(
        &mut self,
        now: Instant,
        header: Header,
    ) -> Result<(), (Error, JobId)> {
        let body_len = header.frame_len() - HEADER_LEN;
        let body = &self.rx[HEADER_LEN..self.rx_len];
        self.skip = body_len - body.len();
        let malformed = (
            Error::Peer(PeerError::Decode(DecodeError::Malformed(
                MessageType::InputChunk,
            ))),
            0,
        );
        // The fields as `Message::decode` reads them: the data is a length
        // and bytes, last.
        let ((id, stream, index, digest, len), rest) =
            postcard::take_from_bytes::<(JobId, u8, u32, Digest, usize)>(body)
                .map_err(|_| malformed)?;
        let at = body.len() - rest.len();
        if len > CHUNK_SIZE || body_len.checked_sub(at) != Some(len) {
            return Err(malformed);
        }
        self.require_ready(MessageType::InputChunk)?;
        if self.declined_lately(id) {
            // An input of an assignment dropped with its declined offer:
            // the rest of the frame is skipped as it arrives.
            self.rx_len = 0;
            return Ok(());
        }
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        let unexpected = (
            Error::Peer(PeerError::UnexpectedMessage(MessageType::InputChunk)),
            id,
        );
        let Phase::Assigned {
            spec,
            step:
                Step::Receiving {
                    input,
                    failure: None,
                },
        } = &self.jobs[i].phase
        else {
            return Err(unexpected);
        };
        let (offset, expected_len) = input.next_chunk(spec);
        if stream != input.stream || index as u64 != input.chunk || len != expected_len {
            return Err((Error::Peer(PeerError::ChunkOutOfOrder(id)), id));
        }
        // The data already read becomes the first piece.
        let mut hasher = crate::crypto::Sha256::new();
        hasher.update(&[0x00]);
        hasher.update(rest);
        let have = rest.len();
        self.rx.copy_within(HEADER_LEN + at..self.rx_len, 0);
        self.rx_len = have;
        self.skip = 0;
        self.chunk_in = Some(InStream {
            job: id,
            stream,
            offset,
            left: len - have,
            digest,
            hasher,
        });
        if len == have {
            return self.end_piece(now);
        }
        Ok(())
    }

    /// Takes data of the arriving chunk from `bytes`; returns how many
    /// (taken even when the piece they complete meets an error). A full
    /// piece, or the chunk's last, goes to the host (`JobData`).
    pub(super) fn take_chunk_data(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> (usize, Result<(), (Error, JobId)>) {
        let Some(s) = self.chunk_in.as_mut() else {
            return (0, Ok(()));
        };
        let take = s.left.min(RX_CAPACITY - self.rx_len).min(bytes.len());
        let piece = &mut self.rx[self.rx_len..self.rx_len + take];
        piece.copy_from_slice(&bytes[..take]);
        s.hasher.update(piece);
        s.left -= take;
        self.rx_len += take;
        if s.left > 0 && self.rx_len < MAX_INPUT_PIECE {
            return (take, Ok(()));
        }
        (take, self.end_piece(now))
    }

    /// A piece of the arriving chunk is in `rx`: hands it to the host, and
    /// at the chunk's end checks its digest and the job's roots.
    fn end_piece(&mut self, now: Instant) -> Result<(), (Error, JobId)> {
        let Some(s) = self.chunk_in.as_ref() else {
            return Ok(());
        };
        let (id, stream, offset, left, len) = (s.job, s.stream, s.offset, s.left, self.rx_len);
        // The job may have ended (its deadline passed) since the frame
        // began: the rest of the frame is dropped.
        let i = match self.find(id) {
            Some(i)
                if matches!(
                    &self.jobs[i].phase,
                    Phase::Assigned {
                        step: Step::Receiving { input, failure: None },
                        ..
                    } if input.stream == stream
                ) =>
            {
                i
            }
            _ => {
                self.skip = left;
                self.chunk_in = None;
                self.rx_len = 0;
                return Ok(());
            }
        };
        if left > 0 {
            if let Some(s) = self.chunk_in.as_mut() {
                s.offset += len as u64;
            }
            self.hand_over_piece(id, stream, offset, len);
            return Ok(());
        }
        let Some(s) = self.chunk_in.take() else {
            return Ok(());
        };
        let leaf = s.hasher.finish();
        if leaf != s.digest {
            self.rx_len = 0;
            self.fail_inputs(now, i, ErrorCode::ChunkDigestMismatch);
            return Ok(());
        }
        let Phase::Assigned {
            spec,
            step: step @ Step::Receiving { .. },
        } = &mut self.jobs[i].phase
        else {
            return Ok(());
        };
        let Step::Receiving { input, .. } = step else {
            return Ok(());
        };
        let received = input.push(spec, leaf);
        if received == Received::Complete {
            *step = Step::Running {
                started_at: now,
                failure: None,
            };
        }
        self.hand_over_piece(id, stream, offset, len);
        match received {
            Received::More => Ok(()),
            Received::Corrupt => {
                self.fail_inputs(now, i, ErrorCode::RootMismatch);
                Ok(())
            }
            Received::Complete => {
                self.push_event(EventRecord::RunJob(id));
                self.enqueue(&Message::Started(JobRef { job: id }))
                    .map_err(|e| (e, id))
            }
        }
    }

    /// The piece in `rx` goes to the host (`JobData`), which reads it before
    /// the agent takes more input.
    fn hand_over_piece(&mut self, job: JobId, stream: u8, offset: u64, len: usize) {
        self.rx_held = true;
        self.push_event(EventRecord::JobData {
            job,
            stream,
            offset,
            len,
        });
    }

    /// An input failed its digest or root: tell the peer, cancel on the host,
    /// and end the job with a signed failure.
    fn fail_inputs(&mut self, now: Instant, i: usize, code: ErrorCode) {
        let id = self.jobs[i].id;
        let _ = self.enqueue(&Message::Error(ErrorMsg {
            code: code as u16,
            job: id,
        }));
        self.push_event(EventRecord::CancelJob(id, CancelReason::InputIntegrity));
        self.end_failed_or_retry(
            now,
            i,
            FailReason::InputIntegrity,
            code as u32,
            Usage::default(),
        );
    }

    pub(super) fn on_cancel(&mut self, id: JobId, reason: u16) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::Cancel)?;
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        let job = &self.jobs[i];
        if job.result().is_some() {
            // The result exists and is signed: it must be acknowledged, not lost.
            return Err((
                Error::Peer(PeerError::UnexpectedMessage(MessageType::Cancel)),
                id,
            ));
        }
        // A job whose failure the host knows of was dropped by the host already.
        let knows = job.host_knows() && job.failure().is_none();
        self.jobs.swap_remove(i);
        if knows {
            self.push_event(EventRecord::CancelJob(id, CancelReason::Requested(reason)));
        }
        self.check_drained().map_err(|e| (e, id))
    }

    /// The bytes of `job`'s last [`Event::JobData`], once that event has been
    /// polled and until the next [`Agent::handle_input`]; `None` otherwise.
    ///
    /// [`Event::JobData`]: super::Event::JobData
    pub fn input(&self, job: JobId) -> Option<&[u8]> {
        match self.input_view {
            Some((j, start, len)) if j == job && self.rx_held && start + len <= self.rx_len => {
                Some(&self.rx[start..start + len])
            }
            _ => None,
        }
    }

    /// Copies the bytes of `job`'s last [`Event::JobData`] into `out`
    /// (see [`Agent::input`]); returns how many. `BufferTooSmall` with the
    /// length needed if `out` is shorter, `NoInput` if no chunk of `job`
    /// is readable now.
    ///
    /// [`Event::JobData`]: super::Event::JobData
    pub fn read_input(&self, job: JobId, out: &mut [u8]) -> Result<usize, Error> {
        let data = self
            .input(job)
            .ok_or(Error::Usage(UsageError::NoInput(job)))?;
        let dst = out
            .get_mut(..data.len())
            .ok_or(Error::BufferTooSmall(data.len()))?;
        dst.copy_from_slice(data);
        Ok(data.len())
    }
}

// `assignment_is_sane` keeps the bindings seen as bits of a u32.
const _: () = assert!(MAX_BINDINGS <= u32::BITS);

/// Whether a sealed job's sizes are ones a sealed job has
/// (`docs/PROTOCOL.md`, "Sealed jobs"): push constants none or sealed, and
/// every sealed stream (the kernel if sealed, each initial content, each
/// read-back buffer, the first led by the outputs' 48-byte prefix) a
/// length sealing gives.
fn sealing_is_sane(a: &JobAssign, s: &Sealing) -> bool {
    let push = a.kernel.push_constants.len() as u64;
    let kernel = plain_len(u64::from(a.kernel.len));
    (push == 0 || matches!(plain_len(push), Some(p) if p > 0))
        && (!s.kernel_sealed || matches!(kernel, Some(p) if p > 0 && p % 4 == 0))
        && a.buffers.iter().all(|b| plain_len(b.init_len).is_some())
        && a.buffers
            .iter()
            .filter(|b| b.readback)
            .enumerate()
            .all(|(i, b)| output_plain_len(b.len, i == 0).is_some())
}

/// Whether an assignment keeps to its offer's sizes and the agent's limits.
fn assignment_is_sane(a: &JobAssign, bytes_in: u64, bytes_out: u64) -> bool {
    let k = &a.kernel;
    let mut sent = k.len as u64;
    let mut returned = 0u64;
    // One bit per binding number seen: each below MAX_BINDINGS, none twice.
    let mut bindings = 0u32;
    for b in a.buffers.iter() {
        if b.len == 0 || b.init_len > b.len || b.binding >= MAX_BINDINGS {
            return false;
        }
        let bit = 1u32 << b.binding;
        if bindings & bit != 0 {
            return false;
        }
        bindings |= bit;
        sent = sent.saturating_add(b.init_len);
        if b.readback {
            returned = returned.saturating_add(b.len);
        }
    }
    k.len > 0
        && (k.len as u64) <= MAX_KERNEL_BYTES
        && k.len % 4 == 0
        && k.grid.iter().all(|&g| g > 0)
        && !k.entry_point.is_empty()
        && sent <= bytes_in
        && returned <= bytes_out
}
