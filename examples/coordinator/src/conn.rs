//! What the engine holds of a connection: an [`Outbox`], a handle to the
//! connection's queue inside the event loop (`server.rs`), and a [`Reply`]
//! that answers a requester on its connection.
//!
//! The engine runs on the loop's thread or, for the public API
//! (`drain_providers`, `shutdown`), on the caller's; either way a call only
//! queues: the loop writes. Queuing marks the connection for the loop and,
//! when the loop is asleep in its poll, wakes it ([`Notify`]).
//!
//! The bytes queued for a peer are capped: a peer that does not read is
//! disconnected rather than buffered for ([`Outbox::send_parts`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::{Token, Waker};

use crate::budget::Permit;
use crate::engine::Answer;
use crate::submission::InputStream;

/// What the loop takes from a connection's queue, in order.
pub(crate) enum WriteCmd {
    /// A frame, in one or more parts written back to back; the permit, if
    /// any, is released once its last byte is handed to TLS (rustls then
    /// holds at most its 64 KiB buffer limit of records not yet written).
    Frame {
        parts: Vec<Vec<u8>>,
        len: usize,
        hold: Option<Permit>,
    },
    /// A job's input chunks, framed one at a time as the peer reads them.
    Inputs(InputStream),
    /// The answer to a requester's request number `seq` on this connection.
    Answer { seq: u64, answer: Answer },
    /// Send what is queued, then a TLS close_notify, then shut the socket.
    Close,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere never leaves these queues in a state that matters
    // more than the connection ending: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tells the event loop which connections have something new queued, and
/// wakes it when it sleeps.
pub(crate) struct Notify {
    /// None for a test outbox.
    waker: Option<Waker>,
    dirty: Mutex<Vec<Token>>,
    /// Set while the loop is awake (it looks at `dirty` before it sleeps)
    /// or once a wake is on its way: no second system call is made.
    woken: AtomicBool,
}

impl Notify {
    pub(crate) fn new(waker: Option<Waker>) -> Notify {
        Notify {
            waker,
            dirty: Mutex::new(Vec::new()),
            woken: AtomicBool::new(false),
        }
    }

    /// Tells the loop to look at `token`.
    pub(crate) fn mark(&self, token: Token) {
        lock(&self.dirty).push(token);
        self.wake();
    }

    /// Wakes the loop unless it is awake already.
    pub(crate) fn wake(&self) {
        if !self.woken.swap(true, Ordering::SeqCst) {
            if let Some(w) = &self.waker {
                if let Err(e) = w.wake() {
                    log::error!("cannot wake the event loop: {e}");
                }
            }
        }
    }

    /// The loop is awake: calls need not wake it.
    pub(crate) fn awake(&self) {
        self.woken.store(true, Ordering::SeqCst);
    }

    /// The loop is about to sleep; `true` if something was marked meanwhile
    /// (then it must not sleep).
    pub(crate) fn sleeping(&self) -> bool {
        self.woken.store(false, Ordering::SeqCst);
        !lock(&self.dirty).is_empty()
    }

    /// Takes the connections marked since the last call.
    pub(crate) fn take(&self, into: &mut Vec<Token>) {
        into.clear();
        std::mem::swap(&mut *lock(&self.dirty), into);
    }
}

/// One connection's queue.
#[derive(Default)]
pub(crate) struct Queue {
    cmds: VecDeque<WriteCmd>,
    /// Bytes of frames queued and not yet written (the frame being written
    /// included).
    queued: usize,
    /// Shut the connection now, whatever is queued.
    aborted: bool,
    /// The connection is gone: whatever comes is dropped.
    gone: bool,
    /// The loop has been told about this connection and has not looked yet.
    marked: bool,
}

struct OutboxShared {
    queue: Mutex<Queue>,
    token: Token,
    max_queued: usize,
    overflows: Arc<AtomicU64>,
    notify: Arc<Notify>,
}

/// Queues frames for one peer; cheap to clone. The event loop writes them,
/// in the order queued, as the peer reads.
#[derive(Clone)]
pub(crate) struct Outbox(Arc<OutboxShared>);

impl Outbox {
    /// The outbox of the connection `token`.
    pub(crate) fn new(
        token: Token,
        max_queued: usize,
        overflows: Arc<AtomicU64>,
        notify: Arc<Notify>,
    ) -> Outbox {
        Outbox(Arc::new(OutboxShared {
            queue: Mutex::new(Queue::default()),
            token,
            max_queued,
            overflows,
            notify,
        }))
    }

    fn push(&self, f: impl FnOnce(&mut Queue)) {
        let mark = {
            let mut q = lock(&self.0.queue);
            if q.gone {
                return;
            }
            f(&mut q);
            !std::mem::replace(&mut q.marked, true)
        };
        if mark {
            self.0.notify.mark(self.0.token);
        }
    }

    /// Queues a frame. A closed connection drops it silently: the loop has
    /// reported the end of the connection already. A peer with more than
    /// the cap already queued is disconnected instead.
    pub(crate) fn send(&self, frame: Vec<u8>) {
        self.send_parts(vec![frame], None);
    }

    /// Queues a frame made of `parts`, holding `hold` until it is written
    /// (handed to TLS).
    pub(crate) fn send_parts(&self, parts: Vec<Vec<u8>>, hold: Option<Permit>) {
        self.queue_parts(parts, hold, true);
    }

    /// [`Outbox::send_parts`] for a requester's answers, which the cap does
    /// not bound: they go out in the order of their requests, so several
    /// held behind a slow one are queued at once; their bytes are in the
    /// budget already (`hold`), at most `MAX_IN_FLIGHT` of them, and a
    /// requester that does not read is dropped after the write timeout.
    pub(crate) fn send_answer_parts(&self, parts: Vec<Vec<u8>>, hold: Option<Permit>) {
        self.queue_parts(parts, hold, false);
    }

    fn queue_parts(&self, parts: Vec<Vec<u8>>, hold: Option<Permit>, capped: bool) {
        let len = parts.iter().fold(0usize, |n, p| n.saturating_add(p.len()));
        let max = self.0.max_queued;
        let overflows = &self.0.overflows;
        self.push(|q| {
            let before = q.queued;
            // A frame is always taken when nothing waits, however large (a
            // requester's result); the cap is on what piles up unwritten.
            if capped && before > 0 && before.saturating_add(len) > max {
                if !q.aborted {
                    log::warn!(
                        "peer does not read: {before} bytes queued, the cap is {max}; \
                         disconnecting"
                    );
                    overflows.fetch_add(1, Ordering::Relaxed);
                }
                q.aborted = true;
                return;
            }
            q.queued += len;
            q.cmds.push_back(WriteCmd::Frame { parts, len, hold });
        });
    }

    /// Queues a job's input chunks, framed as the peer reads them.
    pub(crate) fn send_inputs(&self, inputs: InputStream) {
        self.push(|q| q.cmds.push_back(WriteCmd::Inputs(inputs)));
    }

    /// Queues the answer to a requester's request `seq`.
    pub(crate) fn answer(&self, seq: u64, answer: Answer) {
        self.push(|q| q.cmds.push_back(WriteCmd::Answer { seq, answer }));
    }

    /// Sends what is queued, then a TLS close_notify, then shuts the socket.
    pub(crate) fn close(&self) {
        self.push(|q| q.cmds.push_back(WriteCmd::Close));
    }

    /// Shuts the socket now, whatever is queued; the loop reports the
    /// connection closed.
    pub(crate) fn abort(&self) {
        self.push(|q| q.aborted = true);
    }

    /// For the loop: the next command, or `Err(())` once the connection is
    /// to be shut now. Clears the mark.
    pub(crate) fn next(&self) -> Result<Option<WriteCmd>, ()> {
        let mut q = lock(&self.0.queue);
        q.marked = false;
        if q.aborted {
            return Err(());
        }
        Ok(q.cmds.pop_front())
    }

    /// The connection's token.
    pub(crate) fn token(&self) -> Token {
        self.0.token
    }

    /// For the loop: nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.0.queue).cmds.is_empty()
    }

    /// For the loop: whether the connection is to be shut now.
    pub(crate) fn aborted(&self) -> bool {
        lock(&self.0.queue).aborted
    }

    /// For the loop: a frame of `len` bytes has been handed to TLS.
    pub(crate) fn written(&self, len: usize) {
        let mut q = lock(&self.0.queue);
        q.queued = q.queued.saturating_sub(len);
    }

    /// For the loop: the connection is gone; what is queued is dropped
    /// (permits given back) and so is anything queued later.
    pub(crate) fn gone(&self) {
        let cmds = {
            let mut q = lock(&self.0.queue);
            q.gone = true;
            q.queued = 0;
            std::mem::take(&mut q.cmds)
        };
        drop(cmds);
    }
}

/// Where the engine sends a requester's answer.
pub(crate) struct Reply(ReplyTo);

enum ReplyTo {
    /// Onto the requester's connection, for its request `seq`.
    Conn(Outbox, u64),
    #[cfg(test)]
    Channel(std::sync::mpsc::Sender<Answer>),
}

impl Reply {
    /// Answers request `seq` on the connection of `outbox`.
    pub(crate) fn to_conn(outbox: Outbox, seq: u64) -> Reply {
        Reply(ReplyTo::Conn(outbox, seq))
    }

    /// Answers on a channel a test reads.
    #[cfg(test)]
    pub(crate) fn channel(tx: std::sync::mpsc::Sender<Answer>) -> Reply {
        Reply(ReplyTo::Channel(tx))
    }

    /// Delivers the answer; a requester gone drops it.
    pub(crate) fn send(self, answer: Answer) {
        match self.0 {
            ReplyTo::Conn(outbox, seq) => outbox.answer(seq, answer),
            #[cfg(test)]
            ReplyTo::Channel(tx) => {
                let _ = tx.send(answer);
            }
        }
    }
}

/// A test's view of an outbox: what has been queued on it.
#[cfg(test)]
pub(crate) struct TestQueue(Outbox);

/// An outbox whose frames a test reads back instead of a socket.
#[cfg(test)]
pub(crate) fn test_outbox() -> (Outbox, TestQueue) {
    let outbox = Outbox::new(
        Token(0),
        usize::MAX,
        Arc::new(AtomicU64::new(0)),
        Arc::new(Notify::new(None)),
    );
    (outbox.clone(), TestQueue(outbox))
}

#[cfg(test)]
impl TestQueue {
    fn drain(&self) -> Vec<WriteCmd> {
        let mut q = lock(&self.0 .0.queue);
        q.queued = 0;
        q.cmds.drain(..).collect()
    }
}

/// The frames queued on a test outbox so far, input chunks framed.
#[cfg(test)]
pub(crate) fn queued_frames(rx: &TestQueue) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for cmd in rx.drain() {
        match cmd {
            WriteCmd::Frame { parts, .. } => frames.push(parts.concat()),
            WriteCmd::Inputs(mut inputs) => {
                let mut buf = Vec::new();
                while let Some(n) = inputs.next_frame(&mut buf) {
                    frames.push(buf[..n].to_vec());
                }
            }
            WriteCmd::Answer { .. } | WriteCmd::Close => {}
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(max_queued: usize) -> (Outbox, Arc<AtomicU64>) {
        let overflows = Arc::new(AtomicU64::new(0));
        let outbox = Outbox::new(
            Token(0),
            max_queued,
            Arc::clone(&overflows),
            Arc::new(Notify::new(None)),
        );
        (outbox, overflows)
    }

    fn frames(outbox: &Outbox) -> usize {
        let mut n = 0;
        while let Ok(Some(_)) = outbox.next() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_peer_that_does_not_read_is_cut_off_at_the_cap() {
        // Nothing is written in this test: the queue only grows.
        let (outbox, overflows) = capped(1000);
        outbox.send(vec![0; 600]);
        outbox.send(vec![0; 400]);
        assert_eq!(overflows.load(Ordering::SeqCst), 0);
        assert!(!outbox.aborted());
        outbox.send(vec![0; 1]);
        assert_eq!(overflows.load(Ordering::SeqCst), 1);
        assert!(outbox.aborted(), "the peer is disconnected");
        assert!(outbox.next().is_err());

        // One frame larger than the cap is taken when nothing waits.
        let (outbox, overflows) = capped(1000);
        outbox.send(vec![0; 5000]);
        assert_eq!(overflows.load(Ordering::SeqCst), 0);
        assert_eq!(frames(&outbox), 1);
        // Taken off the queue but not yet written: it still counts.
        outbox.send(vec![0; 1]);
        assert_eq!(overflows.load(Ordering::SeqCst), 1);

        // Once written, its bytes no longer count.
        let (outbox, overflows) = capped(1000);
        outbox.send(vec![0; 5000]);
        assert_eq!(frames(&outbox), 1);
        outbox.written(5000);
        outbox.send(vec![0; 1]);
        assert_eq!(overflows.load(Ordering::SeqCst), 0);
    }
}
