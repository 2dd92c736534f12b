//! A running job's way out: progress reports, output chunks, and writing
//! the outputs again after a reconnect.

use super::job::{buffer_len, first_readback, next_readback, Phase, Step, Upload};
use super::{Agent, ConnState, EventRecord, Outcome};
use crate::attest::Signer;
use crate::error::{Error, UsageError};
use crate::limits::{CHUNK_SIZE, HEADER_LEN};
use crate::time::Instant;
use crate::wire::{Chunk, JobId, Message, Progress};

/// What [`Agent::send_output`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Output bytes taken (hashed, and written when a session is up).
    pub taken: usize,
    /// Bytes written into `out`, to send.
    pub written: usize,
}

/// What [`Agent::send_outputs`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentAll {
    /// Every output is taken: call [`Agent::finish_job`].
    pub done: bool,
    /// Bytes written into `out`, to send.
    pub written: usize,
}

/// Bytes of the `OutputChunk` frame of `len` data bytes at `index`.
fn chunk_frame_len(job: JobId, index: u32, len: usize) -> usize {
    fn varint(mut v: u64) -> usize {
        let mut n = 1;
        while v >= 0x80 {
            v >>= 7;
            n += 1;
        }
        n
    }
    HEADER_LEN + varint(job) + 1 + varint(index.into()) + 32 + varint(len as u64) + len
}

impl<S: Signer> Agent<S> {
    /// Reports a running job's progress, in thousandths.
    pub fn report_progress(
        &mut self,
        _now: Instant,
        id: JobId,
        permille: u16,
    ) -> Result<(), Error> {
        let i = self.live_job_index(id)?;
        if !matches!(self.jobs[i].step(), Some(Step::Running { .. })) {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        }
        if self.conn != ConnState::Ready {
            return Ok(());
        }
        self.enqueue(&Message::Progress(Progress {
            job: id,
            permille: permille.min(1000),
        }))
    }

    /// Where the next `send_output` call for a job must start: the read-back
    /// buffer index and the byte offset in it.
    pub fn output_cursor(&self, id: JobId) -> Option<(u8, u64)> {
        let Phase::Assigned { spec, step } = &self.jobs[self.find(id)?].phase else {
            return None;
        };
        match step {
            Step::Running { .. } => Some((first_readback(spec)?, 0)),
            Step::Uploading { upload, .. } | Step::Resending { upload, .. } => {
                Some((upload.buffer, upload.offset))
            }
            Step::Receiving { .. } | Step::AwaitingAck { .. } => None,
        }
    }

    /// Takes output bytes of read-back buffer `buffer`, continuing where the
    /// last call stopped, and writes their frames into `out`: first any
    /// frames already queued (as [`Agent::poll_transmit`] would), then one
    /// `OutputChunk` per whole chunk (or the buffer's tail) that fits.
    /// Send `out[..written]` before anything else is polled.
    ///
    /// `taken` is 0 when `out` had no room for the next chunk's frame: send
    /// what was written and call again with the same bytes. An `out` of
    /// [`MAX_FRAME`](crate::limits::MAX_FRAME) bytes always makes progress;
    /// with [`TRANSMIT_BUFFER`](crate::limits::TRANSMIT_BUFFER) bytes every
    /// call takes a chunk. `BufferTooSmall` with the length that takes the
    /// next chunk when `out` could never hold its frame (or is empty while
    /// frames are queued). While no session is ready the bytes are hashed
    /// and taken, and nothing is written: they are asked for again with
    /// [`Event::ResendOutputs`] once one is. Bytes beyond the buffer's end
    /// are not taken.
    ///
    /// [`Event::ResendOutputs`]: super::Event::ResendOutputs
    pub fn send_output(
        &mut self,
        _now: Instant,
        id: JobId,
        buffer: u8,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<Sent, Error> {
        let i = self.live_job_index(id)?;
        let epoch = self.epoch;
        let connected = self.conn == ConnState::Ready;
        let queued = self.tx.len();
        let Phase::Assigned { spec, step } = &mut self.jobs[i].phase else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        // A buffer that cannot hold the next frame is refused before
        // anything changes.
        let (cursor, sending) = match step {
            Step::Running { failure: None, .. } => {
                (first_readback(spec).map(|b| (b, 0)), connected)
            }
            Step::Uploading { upload, .. } | Step::Resending { upload, .. } => (
                Some((upload.buffer, upload.offset)),
                connected && upload.epoch == epoch,
            ),
            _ => (None, false),
        };
        if let Some((b, offset)) = cursor {
            let total = buffer_len(spec, b);
            let want = total.saturating_sub(offset).min(CHUNK_SIZE as u64) as usize;
            let need = chunk_frame_len(id, (offset / CHUNK_SIZE as u64) as u32, want);
            // Progress needs room for the next frame, or for some of the
            // queued bytes before it.
            let stuck = out.len() < need && (queued == 0 || out.is_empty());
            if sending && stuck && b == buffer && want > 0 && data.len() >= want {
                return Err(Error::BufferTooSmall(queued + need));
            }
        }
        if let Step::Running {
            started_at,
            failure: None,
        } = *step
        {
            // Check the call before the job changes state: a refused call
            // leaves the job running.
            if first_readback(spec) != Some(buffer) {
                return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
            }
            *step = Step::Uploading {
                started_at,
                upload: Upload::new(spec, epoch),
                failure: None,
            };
        }
        let (Step::Uploading { upload, .. } | Step::Resending { upload, .. }) = step else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        let total = buffer_len(spec, upload.buffer);
        if buffer != upload.buffer || upload.offset >= total {
            return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
        }
        let send = connected && upload.epoch == epoch;
        let mut sent = Sent::default();
        if send {
            // Queued frames go first, so that the order of frames stays the
            // order they were made in.
            sent.written = self.tx.pop(out).unwrap_or(0);
            if self.tx.len() > 0 {
                return Ok(sent);
            }
        }
        while upload.offset < total {
            let want = (total - upload.offset).min(CHUNK_SIZE as u64) as usize;
            if data.len() - sent.taken < want {
                break;
            }
            let index = (upload.offset / CHUNK_SIZE as u64) as u32;
            let need = chunk_frame_len(id, index, want);
            if send && out.len() - sent.written < need {
                break;
            }
            let chunk = &data[sent.taken..sent.taken + want];
            let digest = crate::merkle::leaf_hash(chunk);
            if send {
                let msg = Message::OutputChunk(Chunk {
                    job: id,
                    stream: upload.buffer,
                    index,
                    digest,
                    data: chunk,
                });
                // Room was checked above.
                let n = msg
                    .encode(&mut out[sent.written..])
                    .map_err(|_| Error::BufferTooSmall(need))?;
                sent.written += n;
                self.tx.count_frame();
            }
            if !send {
                // Taken but not sent: whatever session is up when the upload
                // ends has not seen it, so the outputs are asked for again
                // (`finish_job` starts a resend) rather than the outcome
                // going out after a gap. (A session that became ready after
                // the upload began would otherwise match its epoch.)
                upload.epoch = epoch.wrapping_sub(1);
            }
            upload.builder.push_leaf(digest);
            upload.offset += want as u64;
            sent.taken += want;
        }
        // Move to the next read-back buffer once this one is complete.
        if upload.offset >= total {
            if let Some(next) = next_readback(spec, upload.buffer) {
                upload.buffer = next;
                upload.offset = 0;
            }
        }
        Ok(sent)
    }

    /// Takes as much of a job's outputs as `out` holds, continuing where
    /// the last call stopped: a convenience over [`Agent::send_output`].
    /// `outputs` holds every read-back buffer's contents, in binding order.
    /// Send `out[..written]`; when `done`, everything is written (then call
    /// [`Agent::finish_job`]), else call again.
    pub fn send_outputs(
        &mut self,
        now: Instant,
        id: JobId,
        outputs: &[&[u8]],
        out: &mut [u8],
    ) -> Result<SentAll, Error> {
        let i = self.job_index(id)?;
        let readback = self.jobs[i]
            .spec()
            .map(|s| s.buffers.iter().filter(|b| b.readback).count())
            .unwrap_or(0);
        if outputs.len() != readback {
            return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
        }
        // Every output's length first: a refusal after frames were written
        // into `out` would lose them.
        let lengths_match = self.jobs[i].spec().is_none_or(|spec| {
            spec.buffers
                .iter()
                .filter(|b| b.readback)
                .zip(outputs)
                .all(|(b, o)| o.len() as u64 == b.len)
        });
        if !lengths_match {
            return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
        }
        let mut written = 0;
        loop {
            let job = &self.jobs[self.job_index(id)?];
            let (spec, buffer, offset) = match &job.phase {
                Phase::Assigned {
                    spec,
                    step: Step::Running { .. },
                } => match first_readback(spec) {
                    Some(b) => (spec, b, 0),
                    None => {
                        return Ok(SentAll {
                            done: true,
                            written,
                        })
                    }
                },
                Phase::Assigned {
                    spec,
                    step: Step::Uploading { upload, .. } | Step::Resending { upload, .. },
                } => (spec, upload.buffer, upload.offset),
                _ => return Err(Error::Usage(UsageError::InvalidJobState(id))),
            };
            let len = buffer_len(spec, buffer);
            if offset >= len && next_readback(spec, buffer).is_none() {
                return Ok(SentAll {
                    done: true,
                    written,
                });
            }
            let position = spec
                .buffers
                .iter()
                .take(buffer as usize)
                .filter(|b| b.readback)
                .count();
            let data = outputs.get(position).copied().unwrap_or(&[]);
            if data.len() as u64 != len {
                return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
            }
            let rest = out.get_mut(written..).unwrap_or_default();
            let sent = match self.send_output(now, id, buffer, &data[offset as usize..], rest) {
                // What was written already goes out first; the next call
                // (with an empty `out`) goes on, or reports the error.
                Err(_) if written > 0 => {
                    return Ok(SentAll {
                        done: false,
                        written,
                    })
                }
                other => other?,
            };
            written += sent.written;
            if sent.taken == 0 {
                return Ok(SentAll {
                    done: false,
                    written,
                });
            }
        }
    }

    /// Starts delivering again a held result not yet sent on this
    /// connection: its outputs are asked of the host; a result without
    /// outputs goes out from `flush_outcomes`.
    pub(super) fn start_resend(&mut self, i: usize) {
        let epoch = self.epoch;
        let job = &mut self.jobs[i];
        let Phase::Assigned { spec, step } = &mut job.phase else {
            return;
        };
        let Step::AwaitingAck {
            result,
            unsent: true,
        } = step
        else {
            return;
        };
        if !matches!(result.outcome, Outcome::Completed { output_len, .. } if output_len > 0) {
            return;
        }
        *step = Step::Resending {
            upload: Upload::new(spec, epoch),
            result: result.clone(),
        };
        let id = job.id;
        self.push_event(EventRecord::ResendOutputs(id));
    }
}
