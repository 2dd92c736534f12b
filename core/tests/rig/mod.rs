//! An agent with its session up, fed bytes in chosen splits, and what it
//! sent: the harness of `streaming.rs` and `delivery.rs`.
#![allow(dead_code)]

use tessera_core::attest::{ChainState, Ed25519Signer};
use tessera_core::error::InputError;
use tessera_core::testkit::{encode, FrameSplitter};
use tessera_core::wire::{Message, MessageType, Welcome};
use tessera_core::{Agent, Config, ConnState, Event, Instant};

const SEED: [u8; 32] = [9; 32];

/// An agent, virtual now, and the bytes it sent not yet cut into frames.
pub struct Rig {
    pub agent: Agent<Ed25519Signer>,
    pub now: Instant,
    pub sent: FrameSplitter,
}

/// `Welcome` and `Ready`, as the coordinator sends them.
pub fn handshake_bytes() -> Vec<u8> {
    let mut bytes = encode(&Message::Welcome(Welcome {
        version: 1,
        challenge: [1; 32],
        heartbeat_ms: 0,
    }));
    bytes.extend(encode(&Message::Ready));
    bytes
}

impl Rig {
    /// A connected agent past the handshake; what it sent so far is read.
    pub fn ready() -> Rig {
        let signer = Ed25519Signer::from_seed(&SEED).unwrap();
        let agent = Agent::new(Config::default(), signer, ChainState::default()).unwrap();
        let mut rig = Rig {
            agent,
            now: Instant::from_millis(1),
            sent: FrameSplitter::default(),
        };
        rig.agent.connect(rig.now).unwrap();
        let (events, errors) = rig.feed(&handshake_bytes(), 4096);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(events, [Event::Ready]);
        assert_eq!(rig.agent.state(), ConnState::Ready);
        assert_eq!(
            rig.sent_kinds(),
            [MessageType::Hello, MessageType::Evidence]
        );
        rig
    }

    /// Moves what the agent queued into `sent`.
    pub fn transmit(&mut self) {
        let mut out = [0u8; 700];
        while let Some(n) = self.agent.poll_transmit(self.now, &mut out) {
            self.sent.push(&out[..n]);
        }
    }

    /// Every frame sent since the last call.
    pub fn frames(&mut self) -> Vec<Vec<u8>> {
        self.transmit();
        let mut frames = Vec::new();
        while let Some(f) = self.sent.next_frame() {
            frames.push(f);
        }
        frames
    }

    /// The kinds of the frames sent since the last call.
    pub fn sent_kinds(&mut self) -> Vec<MessageType> {
        self.frames()
            .iter()
            .map(|f| Message::decode(f).unwrap().kind())
            .collect()
    }

    /// Feeds `bytes` in slices of at most `step`, reading every event
    /// before the next slice; returns the events and the input errors.
    pub fn feed(&mut self, bytes: &[u8], step: usize) -> (Vec<Event>, Vec<InputError>) {
        let (events, _, errors) = self.feed_reading(bytes, step);
        (events, errors)
    }

    /// As `feed`, also returning each `JobData` with its bytes.
    #[allow(clippy::type_complexity)]
    pub fn feed_reading(
        &mut self,
        bytes: &[u8],
        step: usize,
    ) -> (Vec<Event>, Vec<(Event, Vec<u8>)>, Vec<InputError>) {
        let mut events = Vec::new();
        let mut data = Vec::new();
        let mut errors = Vec::new();
        let mut at = 0;
        let mut idle = 0;
        while at < bytes.len() {
            let end = (at + step).min(bytes.len());
            let n = match self.agent.handle_input(self.now, &bytes[at..end]) {
                Ok(n) => n,
                Err(e) => {
                    let n = e.consumed;
                    errors.push(e);
                    n
                }
            };
            at += n;
            self.transmit();
            let mut any = false;
            while let Some(e) = self.agent.poll_event() {
                any = true;
                if let Event::JobData { job, .. } = e {
                    data.push((e, self.agent.input(job).unwrap().to_vec()));
                }
                events.push(e);
            }
            idle = if n == 0 && !any { idle + 1 } else { 0 };
            assert!(idle < 3, "input stalled at byte {at}");
        }
        (events, data, errors)
    }
}
