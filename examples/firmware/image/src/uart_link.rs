//! The firmware's end of the UART link (`tessera-firmware-link`): frames
//! in, frames out, log lines.

use core::fmt::{self, Write};

use tessera_firmware_link::{
    decode_header, encode_header, Channel, LinkError, ToBridge, HEADER_LEN, MAX_PAYLOAD,
};

use crate::board;

/// Bytes of a frame buffer: a header and the largest payload.
pub const FRAME_BUFFER: usize = HEADER_LEN + MAX_PAYLOAD;

/// Reassembles frames from the UART's bytes.
pub struct Receiver {
    buf: &'static mut [u8; FRAME_BUFFER],
    len: usize,
    /// The whole frame's length, once its header is in.
    want: usize,
    /// The frame in `buf` was handed out; the next call starts a new one.
    complete: bool,
}

impl Receiver {
    /// A receiver over `buf`.
    pub fn new(buf: &'static mut [u8; FRAME_BUFFER]) -> Self {
        Receiver {
            buf,
            len: 0,
            want: HEADER_LEN,
            complete: false,
        }
    }

    /// Reads what the UART holds, up to the end of one frame: that frame's
    /// channel and payload once it is complete, `None` while it is not.
    pub fn poll(&mut self) -> Option<Result<(Channel, &[u8]), LinkError>> {
        if self.complete {
            self.complete = false;
            self.len = 0;
            self.want = HEADER_LEN;
        }
        while self.len < self.want {
            let byte = board::uart_read()?;
            self.buf[self.len] = byte;
            self.len += 1;
            if self.len == HEADER_LEN {
                let header = [self.buf[0], self.buf[1], self.buf[2]];
                match decode_header(header) {
                    Ok((_, n)) => self.want = HEADER_LEN + n,
                    Err(e) => {
                        // The stream lost its framing: nothing after this
                        // can be trusted to line up.
                        self.len = 0;
                        return Some(Err(e));
                    }
                }
            }
        }
        self.complete = true;
        let header = [self.buf[0], self.buf[1], self.buf[2]];
        let channel = match decode_header(header) {
            Ok((channel, _)) => channel,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok((channel, &self.buf[HEADER_LEN..self.len])))
    }
}

/// Writes frames to the UART.
pub struct Sender {
    buf: &'static mut [u8; FRAME_BUFFER],
}

impl Sender {
    /// A sender encoding into `buf`.
    pub fn new(buf: &'static mut [u8; FRAME_BUFFER]) -> Self {
        Sender { buf }
    }

    /// The room for a payload, to be sent with [`Sender::send_payload`].
    pub fn payload_buffer(&mut self) -> &mut [u8] {
        &mut self.buf[HEADER_LEN..]
    }

    /// Sends the first `len` bytes of the payload buffer on `channel`.
    pub fn send_payload(&mut self, channel: Channel, len: usize) -> Result<(), LinkError> {
        let header = encode_header(channel, len)?;
        self.buf[..HEADER_LEN].copy_from_slice(&header);
        board::uart_write(&self.buf[..HEADER_LEN + len]);
        Ok(())
    }

    /// Sends a device command.
    pub fn command(&mut self, command: &ToBridge<'_>) -> Result<(), LinkError> {
        let n = command.encode(self.payload_buffer())?;
        self.send_payload(Channel::Device, n)
    }
}

/// Bytes of a log line; longer lines are cut.
const LINE: usize = 240;

/// A log line being formatted.
struct Line {
    buf: [u8; LINE],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Cut at a character boundary, so the line stays UTF-8.
        let mut take = s.len().min(LINE - self.len);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Sends a log line on channel 2. Needs no [`Sender`], so the panic and
/// trap handlers use it too.
pub fn log(args: fmt::Arguments<'_>) {
    let mut line = Line {
        buf: [0; LINE],
        len: 0,
    };
    let _ = line.write_fmt(args);
    if let Ok(header) = encode_header(Channel::Log, line.len) {
        board::uart_write(&header);
        board::uart_write(&line.buf[..line.len]);
    }
}

/// Formats and sends a log line.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::uart_link::log(format_args!($($arg)*))
    };
}
