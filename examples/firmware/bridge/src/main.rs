//! `tessera-firmware-bridge`: the host side of the bare-metal firmware
//! example (`examples/firmware/README.md`).
//!
//! The firmware image runs the provider agent itself: the protocol state
//! machine, the Merkle hashing of inputs and outputs, and the device key's
//! signatures. What it cannot do is done here, at its request, over one
//! UART (a TCP socket QEMU connects the virtual UART to): the TLS session
//! to the coordinator, whose plaintext passes through unchanged, and the
//! kernels, run on this machine's Vulkan device by tessera-core's
//! dispatcher.
//!
//! ```text
//! tessera-firmware-bridge --coordinator HOST:PORT (--ca FILE | --pin HEX)
//!     [--server-name NAME] [--uart ADDR] [--jobs N] [--device NAME] [--tap FILE]
//! ```
//!
//! It listens for the UART on `--uart` (default 127.0.0.1:0) and prints
//! `uart listening on ADDR`; start QEMU with `-serial tcp:ADDR`. It exits
//! when the UART closes: 0 if the firmware halted with code 0, else 1.

mod net;
mod tap;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tessera_core::gpu_host::GpuHost;
use tessera_core::host::{JobFailure, JobOutputs};
use tessera_core::net::{client_config, Trust};
use tessera_core::vulkan::DeviceSelector;
use tessera_core::wire::{JobAssign, JobId};
use tessera_firmware_link::{
    decode_header, encode_header, Channel, DeviceInfo, ToBridge, ToFirmware, HEADER_LEN, MAX_DATA,
    MAX_PAYLOAD,
};

use crate::net::{Connection, Coordinator};
use crate::tap::{Direction, Tap};

/// How long QEMU has to connect to the UART socket.
const UART_ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Protocol bytes from the coordinator go to the firmware in frames of at
/// most this many bytes.
const DOWN_PIECE: usize = 4096;

const USAGE: &str = "\
usage: tessera-firmware-bridge --coordinator HOST:PORT (--ca FILE | --pin HEX) [options]
  --server-name NAME  the name the coordinator's certificate carries (default localhost)
  --uart ADDR         where QEMU connects the firmware's UART (default 127.0.0.1:0)
  --jobs N            the firmware serves N jobs, then drains and halts (default 0: no end)
  --device NAME       the Vulkan device whose name contains NAME (default: the first GPU)
  --tap FILE          record the protocol frames that pass, one JSON object a line
  --drop-link-at-read N
                      (testing) close the link to the coordinator once, just before
                      answering the firmware's Nth output read: it reconnects and
                      sends the outputs again";

struct Args {
    coordinator: String,
    server_name: String,
    trust: Trust,
    uart: SocketAddr,
    jobs: u32,
    device: DeviceSelector,
    tap: Option<PathBuf>,
    drop_link_at_read: Option<u32>,
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn parse() -> Result<Args, String> {
    let mut coordinator = None;
    let mut trust = None;
    let mut args = Args {
        coordinator: String::new(),
        server_name: "localhost".into(),
        trust: Trust::PinnedKey([0; 32]),
        uart: SocketAddr::from(([127, 0, 0, 1], 0)),
        jobs: 0,
        device: DeviceSelector::Default,
        tap: None,
        drop_link_at_read: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--coordinator" => coordinator = Some(value()?),
            "--server-name" => args.server_name = value()?,
            "--ca" => {
                let path = value()?;
                let pem = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
                trust = Some(Trust::CaPem(pem));
            }
            "--pin" => {
                let v = value()?;
                trust = Some(Trust::PinnedKey(
                    parse_hex32(&v).ok_or("--pin: expected 64 hex digits")?,
                ));
            }
            "--uart" => {
                let v = value()?;
                args.uart = v
                    .parse()
                    .map_err(|_| format!("--uart: not an address: {v}"))?;
            }
            "--jobs" => {
                let v = value()?;
                args.jobs = v
                    .parse()
                    .map_err(|_| format!("--jobs: not a number: {v}"))?;
            }
            "--device" => args.device = DeviceSelector::Name(value()?),
            "--tap" => args.tap = Some(PathBuf::from(value()?)),
            "--drop-link-at-read" => {
                let v = value()?;
                args.drop_link_at_read = Some(
                    v.parse()
                        .map_err(|_| format!("--drop-link-at-read: not a number: {v}"))?,
                );
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    args.coordinator = coordinator.ok_or_else(|| format!("--coordinator is missing\n{USAGE}"))?;
    args.trust = trust.ok_or_else(|| format!("--ca or --pin is missing\n{USAGE}"))?;
    Ok(args)
}

/// What the bridge's main loop reacts to, from its other threads.
pub enum Inbox {
    /// A frame from the firmware.
    FromFirmware(Channel, Vec<u8>),
    /// The UART closed (QEMU exited), or failed.
    UartClosed(String),
    /// Protocol bytes from the coordinator.
    FromCoordinator {
        /// The connection they came on.
        generation: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A connection to the coordinator ended.
    LinkDown {
        /// The connection.
        generation: u64,
        /// Why.
        why: String,
    },
    /// A kernel ran (or did not).
    RunFinished(JobId, Result<JobOutputs, JobFailure>),
}

/// A kernel to run on the GPU thread.
struct RunRequest {
    spec: JobAssign,
    kernel: Vec<u8>,
    buffers: Vec<Vec<u8>>,
    timeout: Duration,
}

/// What the bridge holds of a job for the firmware.
struct Job {
    spec: JobAssign,
    kernel: Vec<u8>,
    /// Each buffer's initial data (`init_len` bytes).
    inputs: Vec<Vec<u8>>,
    /// After the run: each read-back buffer's contents, in buffer order.
    outputs: Vec<Vec<u8>>,
}

impl Job {
    fn new(spec: JobAssign) -> Job {
        let inputs = spec
            .buffers
            .iter()
            .map(|b| vec![0u8; b.init_len as usize])
            .collect();
        Job {
            kernel: vec![0u8; spec.kernel.len as usize],
            inputs,
            outputs: Vec::new(),
            spec,
        }
    }

    /// Where bytes of input `stream` at `offset` go, if they fit.
    fn input_slot(&mut self, stream: u8, offset: u64, len: usize) -> Option<&mut [u8]> {
        let target = match stream {
            0 => &mut self.kernel,
            s => self.inputs.get_mut(s as usize - 1)?,
        };
        let start = usize::try_from(offset).ok()?;
        target.get_mut(start..start.checked_add(len)?)
    }

    /// Output bytes of buffer `buffer` (its index in the assignment).
    fn output(&self, buffer: u8, offset: u64, len: u32) -> Option<&[u8]> {
        let spec = self.spec.buffers.get(buffer as usize)?;
        if !spec.readback {
            return None;
        }
        let position = self.spec.buffers[..buffer as usize]
            .iter()
            .filter(|b| b.readback)
            .count();
        let data = self.outputs.get(position)?;
        let start = usize::try_from(offset).ok()?;
        data.get(start..start.checked_add(len as usize)?)
    }
}

/// Writes one frame to the UART.
fn write_frame(uart: &mut TcpStream, channel: Channel, payload: &[u8]) -> io::Result<()> {
    let header = encode_header(channel, payload.len())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    uart.write_all(&frame)
}

/// Reads frames from the UART until it closes, posting each to the inbox.
/// It never writes, so the firmware can always send.
fn uart_reader(mut uart: TcpStream, inbox: Sender<Inbox>) {
    let why = loop {
        let mut header = [0u8; HEADER_LEN];
        if let Err(e) = uart.read_exact(&mut header) {
            break if e.kind() == io::ErrorKind::UnexpectedEof {
                "the UART closed".into()
            } else {
                format!("UART: {e}")
            };
        }
        let (channel, len) = match decode_header(header) {
            Ok(h) => h,
            Err(e) => break format!("UART: {e}"),
        };
        let mut payload = vec![0u8; len];
        if let Err(e) = uart.read_exact(&mut payload) {
            break format!("UART: {e}");
        }
        if inbox.send(Inbox::FromFirmware(channel, payload)).is_err() {
            return;
        }
    };
    let _ = inbox.send(Inbox::UartClosed(why));
}

/// Opens the Vulkan device, reports its capabilities, then runs kernels.
fn gpu_thread(
    selector: DeviceSelector,
    opened: Sender<Result<tessera_core::attest::DeviceCapabilities, String>>,
    runs: Receiver<(JobId, RunRequest)>,
    inbox: Sender<Inbox>,
) {
    let mut gpu = match GpuHost::open(selector, false) {
        Ok(gpu) => gpu,
        Err(e) => {
            let _ = opened.send(Err(format!("Vulkan device: {e}")));
            return;
        }
    };
    if opened.send(Ok(gpu.capabilities().clone())).is_err() {
        return;
    }
    for (job, run) in runs {
        let result = gpu.run_job(&run.spec, &run.kernel, &run.buffers, run.timeout);
        if inbox.send(Inbox::RunFinished(job, result)).is_err() {
            return;
        }
    }
}

/// Sixteen bytes from the system's random source.
fn entropy() -> Result<[u8; 16], String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes)
}

struct Bridge {
    uart: TcpStream,
    scratch: Vec<u8>,
    coordinator: Coordinator,
    connection: Option<Connection>,
    generation: u64,
    inbox: Sender<Inbox>,
    runs: Sender<(JobId, RunRequest)>,
    info: DeviceInfo,
    jobs: HashMap<JobId, Job>,
    halted: Option<u8>,
    tap: Option<Tap>,
    /// Output reads answered so far, and the one before which the link to
    /// the coordinator is closed (once; `--drop-link-at-read`).
    reads: u32,
    drop_link_at_read: Option<u32>,
}

impl Bridge {
    fn send_command(&mut self, command: &ToFirmware<'_>) -> Result<(), String> {
        let n = command
            .encode(&mut self.scratch)
            .map_err(|e| format!("device command: {e}"))?;
        write_frame(&mut self.uart, Channel::Device, &self.scratch[..n])
            .map_err(|e| format!("UART: {e}"))
    }

    fn on_coordinator_bytes(&mut self, generation: u64, bytes: &[u8]) -> Result<(), String> {
        if self.connection.as_ref().map(|c| c.generation) != Some(generation) {
            return Ok(()); // an older connection's bytes
        }
        if let Some(tap) = &mut self.tap {
            tap.record(Direction::Down, bytes);
        }
        for piece in bytes.chunks(DOWN_PIECE) {
            write_frame(&mut self.uart, Channel::Protocol, piece)
                .map_err(|e| format!("UART: {e}"))?;
        }
        Ok(())
    }

    fn link_down(&mut self, generation: u64, why: &str) -> Result<(), String> {
        if self.connection.as_ref().map(|c| c.generation) != Some(generation) {
            return Ok(());
        }
        println!("bridge: disconnected: {why}");
        self.connection = None;
        self.send_command(&ToFirmware::LinkDown)
    }

    fn on_firmware_frame(&mut self, channel: Channel, payload: &[u8]) -> Result<(), String> {
        match channel {
            Channel::Log => {
                println!("firmware: {}", String::from_utf8_lossy(payload));
                Ok(())
            }
            Channel::Protocol => {
                if let Some(tap) = &mut self.tap {
                    tap.record(Direction::Up, payload);
                }
                let sent = match &mut self.connection {
                    Some(c) => c.send(payload).map_err(|why| (c.generation, why)),
                    None => Ok(()), // the firmware learns of the closed link
                };
                match sent {
                    Ok(()) => Ok(()),
                    Err((generation, why)) => self.link_down(generation, &why),
                }
            }
            Channel::Device => match ToBridge::decode(payload) {
                Ok(command) => self.command(command),
                Err(e) => {
                    eprintln!("bridge: a device command that does not read: {e}");
                    Ok(())
                }
            },
        }
    }

    fn command(&mut self, command: ToBridge<'_>) -> Result<(), String> {
        match command {
            ToBridge::Boot => {
                // A fresh boot: nothing the firmware had before survives it.
                self.jobs.clear();
                if let Some(c) = self.connection.take() {
                    c.close();
                }
                self.info.entropy = entropy()?;
                let info = self.info.clone();
                self.send_command(&ToFirmware::Device(info))
            }
            ToBridge::Connect => {
                if let Some(c) = self.connection.take() {
                    c.close();
                }
                self.generation += 1;
                match self
                    .coordinator
                    .connect(self.generation, self.inbox.clone())
                {
                    Ok(c) => {
                        println!("bridge: connected to {}", self.coordinator.address);
                        if let Some(tap) = &mut self.tap {
                            tap.connected();
                        }
                        self.connection = Some(c);
                        self.send_command(&ToFirmware::LinkUp)
                    }
                    Err(why) => {
                        println!("bridge: {why}");
                        self.send_command(&ToFirmware::LinkDown)
                    }
                }
            }
            ToBridge::Close => {
                if let Some(c) = self.connection.take() {
                    c.close();
                }
                Ok(())
            }
            ToBridge::Assign(spec) => {
                self.jobs.insert(spec.job, Job::new(spec));
                Ok(())
            }
            ToBridge::Data {
                job,
                stream,
                offset,
                bytes,
            } => {
                match self
                    .jobs
                    .get_mut(&job)
                    .and_then(|j| j.input_slot(stream, offset, bytes.len()))
                {
                    Some(slot) => slot.copy_from_slice(bytes),
                    None => eprintln!(
                        "bridge: job {job}: {} bytes of stream {stream} at {offset} fit no input",
                        bytes.len()
                    ),
                }
                Ok(())
            }
            ToBridge::Run { job, timeout_ms } => {
                let Some(j) = self.jobs.get_mut(&job) else {
                    eprintln!("bridge: run of unknown job {job}");
                    return Ok(());
                };
                let run = RunRequest {
                    spec: j.spec.clone(),
                    kernel: std::mem::take(&mut j.kernel),
                    buffers: std::mem::take(&mut j.inputs),
                    timeout: Duration::from_millis(u64::from(timeout_ms)),
                };
                self.runs
                    .send((job, run))
                    .map_err(|_| "the GPU thread stopped".to_string())
            }
            ToBridge::Read {
                job,
                buffer,
                offset,
                len,
            } => {
                self.reads += 1;
                if self.drop_link_at_read == Some(self.reads) {
                    self.drop_link_at_read = None;
                    if let Some(c) = self.connection.take() {
                        println!(
                            "bridge: closing the link to the coordinator (--drop-link-at-read)"
                        );
                        c.close();
                        self.send_command(&ToFirmware::LinkDown)?;
                    }
                }
                let data = self
                    .jobs
                    .get(&job)
                    .filter(|_| len as usize <= MAX_DATA)
                    .and_then(|j| j.output(buffer, offset, len))
                    .map(<[u8]>::to_vec)
                    .unwrap_or_else(|| {
                        eprintln!(
                            "bridge: job {job}: no output at buffer {buffer}, {offset}+{len}"
                        );
                        Vec::new()
                    });
                self.send_command(&ToFirmware::Output {
                    job,
                    buffer,
                    offset,
                    bytes: &data,
                })
            }
            ToBridge::Release { job } => {
                self.jobs.remove(&job);
                Ok(())
            }
            ToBridge::Halt { code } => {
                self.halted = Some(code);
                self.send_command(&ToFirmware::HaltAck)
            }
        }
    }

    fn run_finished(
        &mut self,
        job: JobId,
        result: Result<JobOutputs, JobFailure>,
    ) -> Result<(), String> {
        let Some(j) = self.jobs.get_mut(&job) else {
            return Ok(()); // released while it ran
        };
        let reply = match result {
            Ok(out) => {
                j.outputs = out.outputs;
                ToFirmware::RunDone {
                    job,
                    usage: out.usage,
                }
            }
            Err(f) => ToFirmware::RunFailed {
                job,
                reason: f.reason,
                detail: f.detail,
                usage: f.usage,
            },
        };
        self.send_command(&reply)
    }
}

/// Waits for QEMU to connect to the UART socket.
fn accept_uart(listener: &TcpListener) -> Result<TcpStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("UART socket: {e}"))?;
    let until = Instant::now() + UART_ACCEPT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_nodelay(true))
                    .map_err(|e| format!("UART socket: {e}"))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= until {
                    return Err(format!(
                        "nothing connected to the UART socket within {} s",
                        UART_ACCEPT_TIMEOUT.as_secs()
                    ));
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("UART socket: {e}")),
        }
    }
}

fn run(args: Args) -> Result<bool, String> {
    let tls = client_config(&args.trust).map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(args.server_name.clone())
        .map_err(|_| format!("not a server name: {}", args.server_name))?;
    let tap = match &args.tap {
        Some(path) => Some(Tap::create(path).map_err(|e| format!("{}: {e}", path.display()))?),
        None => None,
    };

    let (inbox, events) = mpsc::channel();
    let (runs, run_queue) = mpsc::channel();
    let (opened_tx, opened) = mpsc::channel();
    let gpu_inbox = inbox.clone();
    let selector = args.device.clone();
    thread::Builder::new()
        .name("gpu".into())
        .spawn(move || gpu_thread(selector, opened_tx, run_queue, gpu_inbox))
        .map_err(|e| format!("cannot start the GPU thread: {e}"))?;
    let capabilities = opened
        .recv()
        .map_err(|_| "the GPU thread stopped".to_string())??;
    println!("bridge: device: {}", capabilities.name);

    let listener =
        TcpListener::bind(args.uart).map_err(|e| format!("--uart {}: {e}", args.uart))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("UART socket: {e}"))?;
    println!("uart listening on {local}");
    let _ = io::stdout().flush();
    let uart = accept_uart(&listener)?;
    let reader = uart.try_clone().map_err(|e| format!("UART socket: {e}"))?;
    let uart_inbox = inbox.clone();
    thread::Builder::new()
        .name("uart-reader".into())
        .spawn(move || uart_reader(reader, uart_inbox))
        .map_err(|e| format!("cannot start the UART thread: {e}"))?;

    let mut bridge = Bridge {
        uart,
        scratch: vec![0u8; MAX_PAYLOAD],
        coordinator: Coordinator {
            address: args.coordinator,
            server_name,
            tls,
        },
        connection: None,
        generation: 0,
        inbox,
        runs,
        info: DeviceInfo {
            entropy: [0; 16],
            jobs: args.jobs,
            capabilities,
        },
        jobs: HashMap::new(),
        halted: None,
        tap,
        reads: 0,
        drop_link_at_read: args.drop_link_at_read,
    };
    for event in events {
        let done = match event {
            Inbox::FromFirmware(channel, payload) => bridge.on_firmware_frame(channel, &payload),
            Inbox::FromCoordinator { generation, bytes } => {
                bridge.on_coordinator_bytes(generation, &bytes)
            }
            Inbox::LinkDown { generation, why } => bridge.link_down(generation, &why),
            Inbox::RunFinished(job, result) => bridge.run_finished(job, result),
            Inbox::UartClosed(why) => {
                println!("bridge: {why}");
                break;
            }
        };
        if let Err(e) = done {
            eprintln!("bridge: {e}");
            break;
        }
    }
    if let Some(c) = bridge.connection.take() {
        c.close();
    }
    match bridge.halted {
        Some(0) => Ok(true),
        Some(code) => {
            eprintln!("bridge: the firmware halted with code {code}");
            Ok(false)
        }
        None => {
            eprintln!("bridge: the firmware stopped without halting");
            Ok(false)
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match parse().and_then(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tessera-firmware-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
