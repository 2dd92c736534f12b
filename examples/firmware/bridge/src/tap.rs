//! A record of the protocol frames that crossed the bridge, one JSON object
//! a line, so that other code can check what the firmware signed and hashed
//! (`ci/verify_firmware_tap.py` does, from `docs/PROTOCOL.md` alone): the
//! challenge, the evidence, each assignment, every input and output chunk,
//! and each receipt. The bridge only watches; it forwards the bytes as they
//! came.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use tessera_core::limits::{HEADER_LEN, MAX_FRAME};
use tessera_core::wire::{Chunk, Header, Message};

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the coordinator to the firmware.
    Down,
    /// From the firmware to the coordinator.
    Up,
}

/// Splits one direction's byte stream into frames.
#[derive(Default)]
struct Frames {
    pending: Vec<u8>,
    /// The stream stopped making sense; nothing more is recorded from it.
    lost: bool,
}

impl Frames {
    fn push(&mut self, bytes: &[u8], mut frame: impl FnMut(&[u8])) {
        if self.lost {
            return;
        }
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        while self.pending.len() - at >= HEADER_LEN {
            let Ok(header) = Header::decode(&self.pending[at..]) else {
                self.lost = true;
                break;
            };
            let n = header.frame_len();
            if n > MAX_FRAME {
                self.lost = true;
                break;
            }
            if self.pending.len() - at < n {
                break;
            }
            frame(&self.pending[at..at + n]);
            at += n;
        }
        self.pending.drain(..at);
    }

    /// A new connection starts both streams afresh.
    fn reset(&mut self) {
        self.pending.clear();
        self.lost = false;
    }
}

/// The record and the two streams it watches.
pub struct Tap {
    out: BufWriter<File>,
    down: Frames,
    up: Frames,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Tap {
    /// Creates (or truncates) the record at `path`.
    pub fn create(path: &Path) -> io::Result<Tap> {
        Ok(Tap {
            out: BufWriter::new(File::create(path)?),
            down: Frames::default(),
            up: Frames::default(),
        })
    }

    /// A connection opened: frames start at the next byte.
    pub fn connected(&mut self) {
        self.down.reset();
        self.up.reset();
    }

    /// Protocol bytes that went `direction`.
    pub fn record(&mut self, direction: Direction, bytes: &[u8]) {
        let mut lines = Vec::new();
        let frames = match direction {
            Direction::Down => &mut self.down,
            Direction::Up => &mut self.up,
        };
        frames.push(bytes, |frame| {
            if let Some(line) = describe(frame) {
                lines.push(line);
            }
        });
        for line in lines {
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }
}

/// The JSON line for a frame worth recording.
fn describe(frame: &[u8]) -> Option<String> {
    let line = match Message::decode(frame).ok()? {
        Message::Welcome(w) => format!(r#"{{"challenge": "{}"}}"#, hex(&w.challenge)),
        Message::Evidence(e) => format!(r#"{{"evidence": "{}"}}"#, hex(e.bytes)),
        Message::JobAssign(a) => {
            let k = &a.kernel;
            let spec: Vec<String> = k
                .specialization
                .iter()
                .map(|(id, v)| format!("[{id}, {v}]"))
                .collect();
            let buffers: Vec<String> = a
                .buffers
                .iter()
                .map(|b| {
                    format!(
                        r#"{{"binding": {}, "len": {}, "init_len": {}, "readback": {}}}"#,
                        b.binding, b.len, b.init_len, b.readback
                    )
                })
                .collect();
            format!(
                r#"{{"assign": {{"job": {}, "nonce": "{}", "spirv_len": {}, "spirv_root": "{}", "entry_point_hex": "{}", "specialization": [{}], "push_constants": "{}", "grid": [{}, {}, {}], "buffers": [{}], "inputs_root": "{}"}}}}"#,
                a.job,
                hex(&a.requester_nonce),
                k.len,
                hex(&k.root),
                hex(k.entry_point.as_bytes()),
                spec.join(", "),
                hex(&k.push_constants),
                k.grid[0],
                k.grid[1],
                k.grid[2],
                buffers.join(", "),
                hex(&a.inputs_root),
            )
        }
        Message::InputChunk(c) => chunk_line("input", &c),
        Message::OutputChunk(c) => chunk_line("output", &c),
        Message::Receipt(r) => format!(
            r#"{{"receipt": {{"job": {}, "bytes": "{}"}}}}"#,
            r.job,
            hex(r.bytes)
        ),
        _ => return None,
    };
    Some(line)
}

fn chunk_line(what: &str, c: &Chunk<'_>) -> String {
    format!(
        r#"{{"{what}": {{"job": {}, "stream": {}, "index": {}, "digest": "{}", "data": "{}"}}}}"#,
        c.job,
        c.stream,
        c.index,
        hex(&c.digest),
        hex(c.data)
    )
}
