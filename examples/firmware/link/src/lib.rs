//! The framed multiplex over the UART between Tessera's firmware image and
//! its host-side bridge (`examples/firmware/README.md`, "The UART link").
//!
//! A frame is `[channel u8][len u16 LE][len bytes]`. Channel 0 carries the
//! provider protocol's bytes to and from the coordinator, unchanged; channel
//! 1 carries device commands ([`ToBridge`], [`ToFirmware`]); channel 2
//! carries the firmware's log lines (UTF-8, one line a frame). Integers in
//! commands are little-endian; a job's assignment travels as the protocol's
//! own `JobAssign` frame.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

use tessera_core::attest::{DeviceCapabilities, DeviceType};
use tessera_core::bounded::BoundedString;
use tessera_core::limits::{CHUNK_SIZE, MAX_FRAME, TRANSMIT_BUFFER};
use tessera_core::wire::{FailReason, JobAssign, JobId, Message, Usage};

/// Bytes of a frame header: channel, then the payload length (u16 LE).
pub const HEADER_LEN: usize = 3;

/// Most bytes of a frame's payload (both sides refuse longer frames): what
/// the agent writes at once into a transmit buffer, queued frames and an
/// output chunk's frame.
pub const MAX_PAYLOAD: usize = TRANSMIT_BUFFER;

const _: () = assert!(MAX_PAYLOAD <= u16::MAX as usize);
// An output chunk, or a piece of input, fits beside its command's fields.
const _: () = assert!(MAX_DATA >= CHUNK_SIZE);
const _: () = assert!(MAX_PAYLOAD >= MAX_FRAME);

/// Most bytes of data in one [`ToFirmware::Output`] or [`ToBridge::Data`]:
/// what fits in a payload beside the command's own fields.
pub const MAX_DATA: usize = MAX_PAYLOAD - 32;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Channel {
    /// The provider protocol's bytes, to or from the coordinator.
    Protocol = 0,
    /// A device command ([`ToBridge`] or [`ToFirmware`]).
    Device = 1,
    /// A log line from the firmware.
    Log = 2,
}

impl Channel {
    /// The channel of a header byte.
    pub fn from_u8(byte: u8) -> Option<Channel> {
        match byte {
            0 => Some(Channel::Protocol),
            1 => Some(Channel::Device),
            2 => Some(Channel::Log),
            _ => None,
        }
    }
}

/// Why bytes on the link could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// A frame header named no known channel.
    UnknownChannel(u8),
    /// A payload longer than [`MAX_PAYLOAD`].
    TooLong(usize),
    /// A device command of an unknown kind.
    UnknownCommand(u8),
    /// A command shorter than its fields.
    Truncated,
    /// A command's fields hold a value it cannot have.
    Malformed,
    /// The output buffer is too small for the command.
    BufferTooSmall,
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinkError::UnknownChannel(c) => write!(f, "unknown channel {c}"),
            LinkError::TooLong(n) => write!(f, "payload of {n} bytes (at most {MAX_PAYLOAD})"),
            LinkError::UnknownCommand(k) => write!(f, "unknown device command 0x{k:02x}"),
            LinkError::Truncated => f.write_str("device command shorter than its fields"),
            LinkError::Malformed => f.write_str("device command with an impossible field"),
            LinkError::BufferTooSmall => f.write_str("buffer too small for the command"),
        }
    }
}

/// The header of a frame carrying `len` bytes on `channel`.
pub fn encode_header(channel: Channel, len: usize) -> Result<[u8; HEADER_LEN], LinkError> {
    if len > MAX_PAYLOAD {
        return Err(LinkError::TooLong(len));
    }
    let n = (len as u16).to_le_bytes();
    Ok([channel as u8, n[0], n[1]])
}

/// The channel and payload length a frame header announces.
pub fn decode_header(header: [u8; HEADER_LEN]) -> Result<(Channel, usize), LinkError> {
    let channel = Channel::from_u8(header[0]).ok_or(LinkError::UnknownChannel(header[0]))?;
    let len = u16::from_le_bytes([header[1], header[2]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(LinkError::TooLong(len));
    }
    Ok((channel, len))
}

/// What the bridge tells the firmware at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Random bytes for the boot id (a device reads its own random source).
    pub entropy: [u8; 16],
    /// Jobs to serve before draining and halting; 0: serve until stopped.
    pub jobs: u32,
    /// The Vulkan device's capabilities, signed into the evidence.
    pub capabilities: DeviceCapabilities,
}

/// A device command from the firmware to the bridge.
// `Assign` is as large as an assignment; there is no allocator to box it
// in, and it is made once a job.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToBridge<'a> {
    /// The firmware started: send [`ToFirmware::Device`].
    Boot,
    /// Open the transport to the coordinator; answered by
    /// [`ToFirmware::LinkUp`] or [`ToFirmware::LinkDown`].
    Connect,
    /// Close the transport to the coordinator.
    Close,
    /// A job was assigned: its kernel, dispatch and buffer layout.
    Assign(JobAssign),
    /// Verified bytes of the job's kernel (stream 0) or of buffer
    /// `stream - 1`, at `offset` in that stream.
    Data {
        /// The job.
        job: JobId,
        /// 0 for the kernel, `i + 1` for buffer `i`.
        stream: u8,
        /// Byte offset in the stream.
        offset: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// All inputs are in: run the kernel within `timeout_ms`; answered by
    /// [`ToFirmware::RunDone`] or [`ToFirmware::RunFailed`].
    Run {
        /// The job.
        job: JobId,
        /// The time the run may take, in milliseconds.
        timeout_ms: u32,
    },
    /// Send `len` bytes of read-back buffer `buffer` from `offset`;
    /// answered by [`ToFirmware::Output`].
    Read {
        /// The job.
        job: JobId,
        /// The buffer's index in the assignment.
        buffer: u8,
        /// Byte offset in the buffer.
        offset: u64,
        /// How many bytes.
        len: u32,
    },
    /// Drop the job's buffers and outputs.
    Release {
        /// The job.
        job: JobId,
    },
    /// The firmware is about to stop with this exit code; answered by
    /// [`ToFirmware::HaltAck`] once everything before it was read.
    Halt {
        /// 0 for success.
        code: u8,
    },
}

/// A device command from the bridge to the firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToFirmware<'a> {
    /// The answer to [`ToBridge::Boot`].
    Device(DeviceInfo),
    /// The transport to the coordinator is open.
    LinkUp,
    /// The transport could not be opened, or it closed.
    LinkDown,
    /// The kernel ran; its outputs wait at the bridge.
    RunDone {
        /// The job.
        job: JobId,
        /// Metered usage.
        usage: Usage,
    },
    /// The kernel did not run to completion.
    RunFailed {
        /// The job.
        job: JobId,
        /// Why, as the protocol says it.
        reason: FailReason,
        /// The reason's detail code.
        detail: u32,
        /// Metered usage of what ran.
        usage: Usage,
    },
    /// Output bytes asked for with [`ToBridge::Read`].
    Output {
        /// The job.
        job: JobId,
        /// The buffer's index in the assignment.
        buffer: u8,
        /// Byte offset in the buffer.
        offset: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// Everything the firmware sent before [`ToBridge::Halt`] was read.
    HaltAck,
}

mod kind {
    pub const BOOT: u8 = 0x01;
    pub const CONNECT: u8 = 0x02;
    pub const CLOSE: u8 = 0x03;
    pub const HALT: u8 = 0x04;
    pub const ASSIGN: u8 = 0x10;
    pub const DATA: u8 = 0x11;
    pub const RUN: u8 = 0x12;
    pub const READ: u8 = 0x13;
    pub const RELEASE: u8 = 0x14;

    pub const DEVICE: u8 = 0x81;
    pub const LINK_UP: u8 = 0x82;
    pub const LINK_DOWN: u8 = 0x83;
    pub const HALT_ACK: u8 = 0x84;
    pub const RUN_DONE: u8 = 0x90;
    pub const RUN_FAILED: u8 = 0x91;
    pub const OUTPUT: u8 = 0x92;
}

impl<'a> ToBridge<'a> {
    /// Writes the command into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, LinkError> {
        let mut w = Writer::new(out);
        match self {
            ToBridge::Boot => w.u8(kind::BOOT)?,
            ToBridge::Connect => w.u8(kind::CONNECT)?,
            ToBridge::Close => w.u8(kind::CLOSE)?,
            ToBridge::Halt { code } => {
                w.u8(kind::HALT)?;
                w.u8(*code)?;
            }
            ToBridge::Assign(spec) => {
                w.u8(kind::ASSIGN)?;
                let rest = w.rest();
                let n = Message::JobAssign(spec.clone())
                    .encode(rest)
                    .map_err(|_| LinkError::BufferTooSmall)?;
                w.advance(n);
            }
            ToBridge::Data {
                job,
                stream,
                offset,
                bytes,
            } => {
                w.u8(kind::DATA)?;
                w.u64(*job)?;
                w.u8(*stream)?;
                w.u64(*offset)?;
                w.bytes(bytes)?;
            }
            ToBridge::Run { job, timeout_ms } => {
                w.u8(kind::RUN)?;
                w.u64(*job)?;
                w.u32(*timeout_ms)?;
            }
            ToBridge::Read {
                job,
                buffer,
                offset,
                len,
            } => {
                w.u8(kind::READ)?;
                w.u64(*job)?;
                w.u8(*buffer)?;
                w.u64(*offset)?;
                w.u32(*len)?;
            }
            ToBridge::Release { job } => {
                w.u8(kind::RELEASE)?;
                w.u64(*job)?;
            }
        }
        w.finish()
    }

    /// Reads a command from a channel-1 payload.
    pub fn decode(payload: &'a [u8]) -> Result<ToBridge<'a>, LinkError> {
        let mut r = Reader::new(payload);
        let command = match r.u8()? {
            kind::BOOT => ToBridge::Boot,
            kind::CONNECT => ToBridge::Connect,
            kind::CLOSE => ToBridge::Close,
            kind::HALT => ToBridge::Halt { code: r.u8()? },
            kind::ASSIGN => match Message::decode(r.rest()) {
                Ok(Message::JobAssign(spec)) => return Ok(ToBridge::Assign(spec)),
                _ => return Err(LinkError::Malformed),
            },
            kind::DATA => {
                let job = r.u64()?;
                let stream = r.u8()?;
                let offset = r.u64()?;
                return Ok(ToBridge::Data {
                    job,
                    stream,
                    offset,
                    bytes: r.rest(),
                });
            }
            kind::RUN => ToBridge::Run {
                job: r.u64()?,
                timeout_ms: r.u32()?,
            },
            kind::READ => ToBridge::Read {
                job: r.u64()?,
                buffer: r.u8()?,
                offset: r.u64()?,
                len: r.u32()?,
            },
            kind::RELEASE => ToBridge::Release { job: r.u64()? },
            other => return Err(LinkError::UnknownCommand(other)),
        };
        r.end()?;
        Ok(command)
    }
}

impl<'a> ToFirmware<'a> {
    /// Writes the command into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, LinkError> {
        let mut w = Writer::new(out);
        match self {
            ToFirmware::Device(info) => {
                w.u8(kind::DEVICE)?;
                w.bytes(&info.entropy)?;
                w.u32(info.jobs)?;
                write_capabilities(&mut w, &info.capabilities)?;
            }
            ToFirmware::LinkUp => w.u8(kind::LINK_UP)?,
            ToFirmware::LinkDown => w.u8(kind::LINK_DOWN)?,
            ToFirmware::HaltAck => w.u8(kind::HALT_ACK)?,
            ToFirmware::RunDone { job, usage } => {
                w.u8(kind::RUN_DONE)?;
                w.u64(*job)?;
                write_usage(&mut w, usage)?;
            }
            ToFirmware::RunFailed {
                job,
                reason,
                detail,
                usage,
            } => {
                w.u8(kind::RUN_FAILED)?;
                w.u64(*job)?;
                w.u8(*reason as u8)?;
                w.u32(*detail)?;
                write_usage(&mut w, usage)?;
            }
            ToFirmware::Output {
                job,
                buffer,
                offset,
                bytes,
            } => {
                w.u8(kind::OUTPUT)?;
                w.u64(*job)?;
                w.u8(*buffer)?;
                w.u64(*offset)?;
                w.bytes(bytes)?;
            }
        }
        w.finish()
    }

    /// Reads a command from a channel-1 payload.
    pub fn decode(payload: &'a [u8]) -> Result<ToFirmware<'a>, LinkError> {
        let mut r = Reader::new(payload);
        let command = match r.u8()? {
            kind::DEVICE => {
                let mut entropy = [0u8; 16];
                entropy.copy_from_slice(r.take(16)?);
                let jobs = r.u32()?;
                let capabilities = read_capabilities(&mut r)?;
                ToFirmware::Device(DeviceInfo {
                    entropy,
                    jobs,
                    capabilities,
                })
            }
            kind::LINK_UP => ToFirmware::LinkUp,
            kind::LINK_DOWN => ToFirmware::LinkDown,
            kind::HALT_ACK => ToFirmware::HaltAck,
            kind::RUN_DONE => ToFirmware::RunDone {
                job: r.u64()?,
                usage: read_usage(&mut r)?,
            },
            kind::RUN_FAILED => ToFirmware::RunFailed {
                job: r.u64()?,
                reason: FailReason::from_u8(r.u8()?).ok_or(LinkError::Malformed)?,
                detail: r.u32()?,
                usage: read_usage(&mut r)?,
            },
            kind::OUTPUT => {
                let job = r.u64()?;
                let buffer = r.u8()?;
                let offset = r.u64()?;
                return Ok(ToFirmware::Output {
                    job,
                    buffer,
                    offset,
                    bytes: r.rest(),
                });
            }
            other => return Err(LinkError::UnknownCommand(other)),
        };
        r.end()?;
        Ok(command)
    }
}

fn write_usage(w: &mut Writer<'_>, u: &Usage) -> Result<(), LinkError> {
    w.u64(u.gpu_time_us)?;
    w.u32(u.dispatches)?;
    w.u64(u.bytes_in)?;
    w.u64(u.bytes_out)
}

fn read_usage(r: &mut Reader<'_>) -> Result<Usage, LinkError> {
    Ok(Usage {
        gpu_time_us: r.u64()?,
        dispatches: r.u32()?,
        bytes_in: r.u64()?,
        bytes_out: r.u64()?,
    })
}

fn write_capabilities(w: &mut Writer<'_>, c: &DeviceCapabilities) -> Result<(), LinkError> {
    let name = c.name.as_bytes();
    w.u8(name.len() as u8)?;
    w.bytes(name)?;
    for v in [c.vendor_id, c.device_id, c.driver_version, c.api_version] {
        w.u32(v)?;
    }
    w.u8(c.device_type as u8)?;
    w.u32(c.features)?;
    w.u64(c.device_local_bytes)?;
    w.u64(c.host_visible_bytes)?;
    for v in c.max_workgroup_size.iter().chain(&c.max_workgroup_count) {
        w.u32(*v)?;
    }
    w.u32(c.max_invocations)?;
    w.u32(c.max_shared_memory)?;
    w.u64(c.max_storage_buffer_range)?;
    for v in [c.subgroup_size, c.copy_mbps, c.fma_mflops] {
        w.u32(v)?;
    }
    Ok(())
}

fn read_capabilities(r: &mut Reader<'_>) -> Result<DeviceCapabilities, LinkError> {
    let name_len = r.u8()? as usize;
    let name = core::str::from_utf8(r.take(name_len)?).map_err(|_| LinkError::Malformed)?;
    let name = BoundedString::try_from(name).map_err(|_| LinkError::Malformed)?;
    let vendor_id = r.u32()?;
    let device_id = r.u32()?;
    let driver_version = r.u32()?;
    let api_version = r.u32()?;
    let device_type = match r.u8()? {
        0 => DeviceType::Other,
        1 => DeviceType::IntegratedGpu,
        2 => DeviceType::DiscreteGpu,
        3 => DeviceType::VirtualGpu,
        4 => DeviceType::Cpu,
        _ => return Err(LinkError::Malformed),
    };
    let features = r.u32()?;
    let device_local_bytes = r.u64()?;
    let host_visible_bytes = r.u64()?;
    let mut sizes = [0u32; 6];
    for v in sizes.iter_mut() {
        *v = r.u32()?;
    }
    Ok(DeviceCapabilities {
        name,
        vendor_id,
        device_id,
        driver_version,
        api_version,
        device_type,
        features,
        device_local_bytes,
        host_visible_bytes,
        max_workgroup_size: [sizes[0], sizes[1], sizes[2]],
        max_workgroup_count: [sizes[3], sizes[4], sizes[5]],
        max_invocations: r.u32()?,
        max_shared_memory: r.u32()?,
        max_storage_buffer_range: r.u64()?,
        subgroup_size: r.u32()?,
        copy_mbps: r.u32()?,
        fma_mflops: r.u32()?,
    })
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Writer { out, at: 0 }
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), LinkError> {
        let end = self.at + b.len();
        if end > MAX_PAYLOAD {
            return Err(LinkError::TooLong(end));
        }
        self.out
            .get_mut(self.at..end)
            .ok_or(LinkError::BufferTooSmall)?
            .copy_from_slice(b);
        self.at = end;
        Ok(())
    }

    fn u8(&mut self, v: u8) -> Result<(), LinkError> {
        self.bytes(&[v])
    }

    fn u32(&mut self, v: u32) -> Result<(), LinkError> {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Result<(), LinkError> {
        self.bytes(&v.to_le_bytes())
    }

    /// The room left, at most what a payload may still hold.
    fn rest(&mut self) -> &mut [u8] {
        let end = self.out.len().min(MAX_PAYLOAD);
        &mut self.out[self.at.min(end)..end]
    }

    fn advance(&mut self, n: usize) {
        self.at += n;
    }

    fn finish(self) -> Result<usize, LinkError> {
        Ok(self.at)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], LinkError> {
        let b = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or(LinkError::Truncated)?;
        self.at += n;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, LinkError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, LinkError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, LinkError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    fn end(&self) -> Result<(), LinkError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(LinkError::Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::bounded::BoundedVec;
    use tessera_core::wire::{BufferSpec, KernelSpec};

    fn spec() -> JobAssign {
        let mut buffers = BoundedVec::new();
        for (binding, readback) in [(0, false), (2, true)] {
            let _ = buffers.push(BufferSpec {
                binding,
                len: 4096,
                init_len: if readback { 0 } else { 4096 },
                readback,
            });
        }
        JobAssign {
            job: 77,
            requester_nonce: [3; 32],
            kernel: KernelSpec {
                len: 1024,
                root: [4; 32],
                entry_point: BoundedString::try_from("main").unwrap(),
                specialization: BoundedVec::from_slice(&[(1, 16)]).unwrap(),
                push_constants: BoundedVec::from_slice(&[1, 2, 3, 4]).unwrap(),
                grid: [2, 2, 1],
            },
            buffers,
            inputs_root: [5; 32],
            sealing: None,
        }
    }

    fn usage() -> Usage {
        Usage {
            gpu_time_us: 1234,
            dispatches: 1,
            bytes_in: 9000,
            bytes_out: 4096,
        }
    }

    #[test]
    fn commands_to_the_bridge_read_back_as_written() {
        let data = [9u8; 2048];
        let commands = [
            ToBridge::Boot,
            ToBridge::Connect,
            ToBridge::Close,
            ToBridge::Halt { code: 3 },
            ToBridge::Assign(spec()),
            ToBridge::Data {
                job: 77,
                stream: 1,
                offset: 8192,
                bytes: &data,
            },
            ToBridge::Run {
                job: 77,
                timeout_ms: 60_000,
            },
            ToBridge::Read {
                job: 77,
                buffer: 1,
                offset: 8192,
                len: 8192,
            },
            ToBridge::Release { job: 77 },
        ];
        let mut buf = [0u8; MAX_PAYLOAD];
        for c in &commands {
            let n = c.encode(&mut buf).unwrap();
            assert_eq!(ToBridge::decode(&buf[..n]).unwrap(), *c);
        }
    }

    #[test]
    fn commands_to_the_firmware_read_back_as_written() {
        let mut capabilities = DeviceCapabilities {
            name: BoundedString::try_from("llvmpipe (LLVM 15.0.6, 256 bits)").unwrap(),
            vendor_id: 0x10005,
            device_type: DeviceType::Cpu,
            features: 0b1011,
            device_local_bytes: 2 << 30,
            max_workgroup_size: [1024, 1024, 64],
            max_workgroup_count: [65535; 3],
            max_storage_buffer_range: 1 << 31,
            fma_mflops: 12345,
            ..DeviceCapabilities::default()
        };
        capabilities.subgroup_size = 8;
        let data = [7u8; 8192];
        let commands = [
            ToFirmware::Device(DeviceInfo {
                entropy: [1; 16],
                jobs: 1,
                capabilities,
            }),
            ToFirmware::LinkUp,
            ToFirmware::LinkDown,
            ToFirmware::HaltAck,
            ToFirmware::RunDone {
                job: 77,
                usage: usage(),
            },
            ToFirmware::RunFailed {
                job: 77,
                reason: FailReason::KernelRejected,
                detail: 4001,
                usage: usage(),
            },
            ToFirmware::Output {
                job: 77,
                buffer: 1,
                offset: 0,
                bytes: &data,
            },
        ];
        let mut buf = [0u8; MAX_PAYLOAD];
        for c in &commands {
            let n = c.encode(&mut buf).unwrap();
            assert_eq!(ToFirmware::decode(&buf[..n]).unwrap(), *c);
        }
    }

    #[test]
    fn short_odd_or_oversized_input_is_refused() {
        let mut buf = [0u8; MAX_PAYLOAD];
        let n = ToFirmware::RunDone {
            job: 1,
            usage: usage(),
        }
        .encode(&mut buf)
        .unwrap();
        for cut in 0..n {
            assert!(ToFirmware::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        buf[n] = 0;
        assert_eq!(ToFirmware::decode(&buf[..n + 1]), Err(LinkError::Malformed));
        assert_eq!(
            ToBridge::decode(&[0x7f]),
            Err(LinkError::UnknownCommand(0x7f))
        );
        assert_eq!(
            ToFirmware::decode(&[kind::RUN_FAILED, 1, 0, 0, 0, 0, 0, 0, 0, 99]),
            Err(LinkError::Malformed)
        );
        let big = [0u8; MAX_PAYLOAD];
        let data = ToBridge::Data {
            job: 1,
            stream: 0,
            offset: 0,
            bytes: &big,
        };
        let mut out = [0u8; 2 * MAX_PAYLOAD];
        assert!(matches!(data.encode(&mut out), Err(LinkError::TooLong(_))));
        let mut small = [0u8; 8];
        assert_eq!(
            ToBridge::Release { job: 1 }.encode(&mut small[..4]),
            Err(LinkError::BufferTooSmall)
        );
    }

    #[test]
    fn headers_name_a_channel_and_a_bounded_length() {
        let h = encode_header(Channel::Log, 300).unwrap();
        assert_eq!(decode_header(h), Ok((Channel::Log, 300)));
        assert_eq!(decode_header([3, 0, 0]), Err(LinkError::UnknownChannel(3)));
        assert_eq!(
            decode_header([0, 0xff, 0xff]),
            Err(LinkError::TooLong(0xffff))
        );
        assert_eq!(
            encode_header(Channel::Protocol, MAX_PAYLOAD + 1),
            Err(LinkError::TooLong(MAX_PAYLOAD + 1))
        );
    }
}
