//! A running job's way out: progress reports, output chunks, and writing
//! the outputs again after a reconnect.

use super::job::{buffer_len, first_readback, next_readback, Phase, Step, Upload};
use super::{Agent, ConnState, EventRecord, Outcome, TX_RESERVE};
use crate::attest::Signer;
use crate::error::{Error, UsageError};
use crate::limits::CHUNK_SIZE;
use crate::time::Instant;
use crate::wire::{Chunk, JobId, Message, Progress};

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

    /// Writes output bytes of read-back buffer `buffer`, continuing where the
    /// last call stopped. Returns how many bytes were taken (whole chunks, or
    /// the buffer's tail): 0 when the outgoing queue is full, in which case
    /// drain `poll_transmit` and call again with the same bytes. Bytes beyond
    /// the buffer's end are not taken.
    pub fn send_output(
        &mut self,
        _now: Instant,
        id: JobId,
        buffer: u8,
        data: &[u8],
    ) -> Result<usize, Error> {
        let i = self.live_job_index(id)?;
        let epoch = self.epoch;
        let connected = self.conn == ConnState::Ready;
        let Phase::Assigned { spec, step } = &mut self.jobs[i].phase else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
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
        let mut taken = 0usize;
        while upload.offset < total {
            let want = (total - upload.offset).min(CHUNK_SIZE as u64) as usize;
            if data.len() - taken < want {
                break;
            }
            if send && self.tx.free() < want + TX_RESERVE {
                break;
            }
            let chunk = &data[taken..taken + want];
            let digest = crate::merkle::leaf_hash(chunk);
            if send {
                let msg = Message::OutputChunk(Chunk {
                    job: id,
                    stream: upload.buffer,
                    index: (upload.offset / CHUNK_SIZE as u64) as u32,
                    digest,
                    data: chunk,
                });
                match self.tx.push(&msg) {
                    Ok(()) => {}
                    Err(Error::WouldBlock) => break,
                    Err(e) => return Err(e),
                }
            }
            upload.builder.push_leaf(digest);
            upload.offset += want as u64;
            taken += want;
        }
        // Move to the next read-back buffer once this one is complete.
        if upload.offset >= total {
            if let Some(next) = next_readback(spec, upload.buffer) {
                upload.buffer = next;
                upload.offset = 0;
            }
        }
        Ok(taken)
    }

    /// Writes as much of a job's outputs as the outgoing queue takes,
    /// continuing where the last call stopped: a convenience over
    /// [`Agent::send_output`]. `outputs` holds every read-back buffer's
    /// contents, in binding order. Returns `true` once everything is written
    /// (then call [`Agent::finish_job`]), `false` when the queue is full (drain
    /// `poll_transmit`, then call again).
    pub fn send_outputs(
        &mut self,
        now: Instant,
        id: JobId,
        outputs: &[&[u8]],
    ) -> Result<bool, Error> {
        let i = self.job_index(id)?;
        let readback = self.jobs[i]
            .spec()
            .map(|s| s.buffers.iter().filter(|b| b.readback).count())
            .unwrap_or(0);
        if outputs.len() != readback {
            return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
        }
        loop {
            let job = &self.jobs[self.job_index(id)?];
            let (spec, buffer, offset) = match &job.phase {
                Phase::Assigned {
                    spec,
                    step: Step::Running { .. },
                } => match first_readback(spec) {
                    Some(b) => (spec, b, 0),
                    None => return Ok(true),
                },
                Phase::Assigned {
                    spec,
                    step: Step::Uploading { upload, .. } | Step::Resending { upload, .. },
                } => (spec, upload.buffer, upload.offset),
                _ => return Err(Error::Usage(UsageError::InvalidJobState(id))),
            };
            let len = buffer_len(spec, buffer);
            if offset >= len && next_readback(spec, buffer).is_none() {
                return Ok(true);
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
            let n = self.send_output(now, id, buffer, &data[offset as usize..])?;
            if n == 0 {
                return Ok(false);
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
