//! Nothing the agent took is lost on its way out: outputs taken while a
//! session was being set up are sent again, frames `send_outputs` already
//! wrote are handed back even when a later output is refused, and an input
//! piece the host polled stays readable across a disconnect.

use tessera_core::limits::{CHUNK_SIZE, TRANSMIT_BUFFER};
use tessera_core::testkit::{encode, JobDescription};
use tessera_core::wire::{JobId, Message, MessageType, Usage};
use tessera_core::{ConnState, Event, JobState};

mod rig;

use rig::{handshake_bytes, Rig};

/// A kernel of one chunk, no input buffer, one read-back buffer of four
/// chunks.
fn job() -> JobDescription {
    JobDescription {
        kernel: (0..CHUNK_SIZE as u32).map(|i| (i * 7) as u8).collect(),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![(Vec::new(), 4 * CHUNK_SIZE as u64, true)],
        nonce: [4; 32],
        bindings: Vec::new(),
    }
}

fn run_job(rig: &mut Rig, j: &JobDescription, id: JobId) {
    let mut bytes = encode(&Message::JobOffer(j.offer(id, 1_000_000, 600_000)));
    bytes.extend(encode(&Message::JobAssign(j.assign(id))));
    for f in j.input_frames(id) {
        bytes.extend(f);
    }
    let (events, errors) = rig.feed(&bytes, 100_000);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(events.last(), Some(&Event::RunJob { job: id }));
    rig.frames();
}

/// An upload that starts while a new session is being set up
/// (after `connect`, before `Ready`) takes its first chunks without writing
/// them, yet once `Ready` arrives the rest of the upload is written and
/// `finish_job` sends the outcome at once, as if the whole upload had gone
/// out on this session: the coordinator gets OutputChunks 1..3, never 0,
/// then `Completed` over a root that covers chunk 0. No `ResendOutputs`.
#[test]
fn an_upload_started_during_the_handshake_skips_no_chunk() {
    let j = job();
    let mut rig = Rig::ready();
    run_job(&mut rig, &j, 1);
    // The transport drops; the host reconnects at once.
    rig.agent.disconnected(rig.now);
    while rig.agent.poll_event().is_some() {}
    rig.agent.connect(rig.now).unwrap();
    assert_eq!(rig.agent.state(), ConnState::AwaitingWelcome);
    rig.frames();
    let output: Vec<u8> = (0..4 * CHUNK_SIZE).map(|i| (i / 3) as u8).collect();
    let now = rig.now;
    let mut out = vec![0u8; TRANSMIT_BUFFER];
    // The job finished meanwhile: the host writes its first chunk.
    let sent = rig
        .agent
        .send_output(now, 1, 0, &output[..CHUNK_SIZE], &mut out)
        .unwrap();
    assert_eq!(sent.taken, CHUNK_SIZE);
    assert_eq!(sent.written, 0, "no session: nothing is written");
    // The handshake completes; the host writes the rest.
    let (_, errors) = rig.feed(&handshake_bytes(), 4096);
    assert!(errors.is_empty());
    let mut events = Vec::new();
    let mut taken = CHUNK_SIZE;
    while taken < output.len() {
        let sent = rig
            .agent
            .send_output(now, 1, 0, &output[taken..], &mut out)
            .unwrap();
        assert!(sent.taken > 0);
        taken += sent.taken;
        rig.sent.push(&out[..sent.written]);
    }
    rig.agent.finish_job(now, 1, Usage::default()).unwrap();
    while let Some(e) = rig.agent.poll_event() {
        events.push(e);
    }
    // What the coordinator saw on this session before the outcome.
    let mut indices = Vec::new();
    let mut completed = false;
    for f in rig.frames() {
        match Message::decode(&f).unwrap() {
            Message::OutputChunk(c) => {
                assert!(!completed);
                indices.push(c.index)
            }
            Message::Completed(_) => completed = true,
            _ => {}
        }
    }
    // Either every chunk went out before `Completed`, or the agent asks the
    // host for the outputs again (and holds the outcome back).
    let resend = events.contains(&Event::ResendOutputs { job: 1 });
    assert!(
        resend || indices == [0, 1, 2, 3],
        "chunks sent {indices:?}, completed {completed}, events {events:?}: \
         chunk 0 never reaches the coordinator"
    );
    if resend {
        assert!(!completed, "outcome sent before the outputs");
        assert_eq!(rig.agent.job_state(1), Some(JobState::Uploading));
    }
}

/// `send_outputs` writes the first read-back buffer's frames
/// (and the frames the agent had queued, popped from its queue) into `out`,
/// then finds the next buffer's bytes of the wrong length and returns
/// `Err(OutputOutOfOrder)`: the caller is never told how many bytes of `out`
/// it must send, so the queued frames (here a `Progress`; in general an
/// offer reply, `Started`, another job's receipt) and the chunks already
/// hashed into the output tree are lost. The agent does not write them
/// again.
#[test]
fn send_outputs_never_loses_written_frames_on_a_later_error() {
    let j = JobDescription {
        kernel: vec![3; 64],
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![
            (Vec::new(), CHUNK_SIZE as u64, true),
            (Vec::new(), 100, true),
        ],
        nonce: [4; 32],
        bindings: Vec::new(),
    };
    let mut rig = Rig::ready();
    run_job(&mut rig, &j, 1);
    let now = rig.now;
    rig.agent.report_progress(now, 1, 500).unwrap();
    assert!(rig.agent.pending_transmit() > 0);
    let first = vec![1u8; CHUNK_SIZE];
    let wrong = vec![2u8; 99]; // one byte short
    let mut out = vec![0u8; 4 * TRANSMIT_BUFFER];
    let result = rig.agent.send_outputs(now, 1, &[&first, &wrong], &mut out);
    // The host can only send what it is told was written.
    let written = match result {
        Ok(sent) => sent.written,
        Err(_) => 0,
    };
    rig.sent.push(&out[..written]);
    let kinds: Vec<MessageType> = rig
        .frames()
        .iter()
        .map(|f| Message::decode(f).unwrap().kind())
        .collect();
    assert!(
        kinds.contains(&MessageType::Progress),
        "send_outputs returned {result:?}; frames that reach the coordinator: {kinds:?}; \
         the queued Progress frame was popped into `out` and lost, and the agent's \
         output cursor already moved to {:?}",
        rig.agent.output_cursor(1)
    );
}

/// Every chunk is taken during the handshake (none
/// written), and `finish_job` is called once `Ready` is in (a host that
/// retries after `EventsPending`, say): the outcome goes out at once with
/// no `OutputChunk` at all on the session, and no `ResendOutputs`.
#[test]
fn a_finish_after_ready_of_an_upload_taken_during_the_handshake_resends() {
    let j = job();
    let mut rig = Rig::ready();
    run_job(&mut rig, &j, 1);
    rig.agent.disconnected(rig.now);
    while rig.agent.poll_event().is_some() {}
    rig.agent.connect(rig.now).unwrap();
    rig.frames();
    let output: Vec<u8> = (0..4 * CHUNK_SIZE).map(|i| (i / 5) as u8).collect();
    let now = rig.now;
    let mut out = vec![0u8; TRANSMIT_BUFFER];
    let sent = rig.agent.send_output(now, 1, 0, &output, &mut out).unwrap();
    assert_eq!((sent.taken, sent.written), (output.len(), 0));
    let (_, errors) = rig.feed(&handshake_bytes(), 4096);
    assert!(errors.is_empty());
    rig.agent.finish_job(now, 1, Usage::default()).unwrap();
    let mut events = Vec::new();
    while let Some(e) = rig.agent.poll_event() {
        events.push(e);
    }
    let kinds: Vec<MessageType> = rig
        .frames()
        .iter()
        .map(|f| Message::decode(f).unwrap().kind())
        .collect();
    let chunks = kinds
        .iter()
        .filter(|k| **k == MessageType::OutputChunk)
        .count();
    assert!(
        events.contains(&Event::ResendOutputs { job: 1 }) || chunks == 4,
        "sent {kinds:?} with events {events:?}: Completed without any output chunk"
    );
}

/// The last piece of a job's inputs is polled
/// (`JobData`, then `RunJob` queued), the transport closes before the host
/// has read the piece, and `disconnected()` drops it although
/// `Agent::input` promises it until the next `handle_input`. The job keeps
/// running (running jobs survive a disconnect), so the host runs it
/// without the piece. A `JobData` still queued keeps its piece
/// (`reset_input`); one polled but unread does not.
#[test]
fn a_polled_piece_stays_readable_across_a_disconnect() {
    let j = JobDescription {
        kernel: vec![3; 64],
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![(vec![5; 100], 100, true)],
        nonce: [4; 32],
        bindings: Vec::new(),
    };
    let mut rig = Rig::ready();
    let mut bytes = encode(&Message::JobOffer(j.offer(1, 1_000_000, 600_000)));
    bytes.extend(encode(&Message::JobAssign(j.assign(1))));
    for f in j.input_frames(1) {
        bytes.extend(f);
    }
    // Feed until the last piece is handed over, reading every piece but
    // the last at once.
    let mut at = 0;
    let mut last = None;
    while at < bytes.len() {
        at += rig.agent.handle_input(rig.now, &bytes[at..]).unwrap();
        rig.transmit();
        while let Some(e) = rig.agent.poll_event() {
            if let Event::JobData { stream: 1, .. } = e {
                last = Some(e);
            } else if let Event::JobData { job, .. } = e {
                rig.agent.input(job).unwrap();
            }
        }
    }
    assert_eq!(rig.agent.job_state(1), Some(JobState::Running));
    assert!(last.is_some());
    // The JobData was polled; the transport closes before it is read.
    rig.agent.disconnected(rig.now);
    assert_eq!(rig.agent.job_state(1), Some(JobState::Running));
    assert_eq!(
        rig.agent.input(1).map(<[u8]>::len),
        Some(100),
        "the polled piece of a running job is gone after disconnected()"
    );
}
