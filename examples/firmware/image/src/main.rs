//! Tessera's provider agent as a bare-metal firmware image for RISC-V
//! (`riscv32imac-unknown-none-elf`), run on QEMU's `virt` machine: no OS,
//! no allocator, one hart, no interrupt handlers.
//!
//! The image links the Rust crate `tessera-core` directly rather than the C
//! ABI: the agent is generic over its [`Signer`](tessera_core::attest::Signer),
//! so the secure element's `sign` is a static call that whole-program LTO
//! sees through and inlines, and there is no C shim between the firmware
//! and the core. (The C ABI's no_std static library is proven separately
//! by `ci/bare-metal`, with `ffi/tests/bare/firmware_min.c`.)
//!
//! Inside the image: the protocol state machine, the Merkle hashing of the
//! inputs it receives and the outputs it sends, and every signature
//! (evidence and receipts), by the key the secure element module holds.
//! Outside, over the UART, a host bridge does what this machine cannot:
//! TLS to the coordinator (the protocol bytes pass through it unchanged)
//! and the kernels, on a Vulkan device. `examples/firmware/README.md`
//! describes the link; `ci/firmware-test` runs one job end to end.
//!
//! The image reports on its log channel what it cost: the agent's size,
//! the stack's peak, and the instructions retired (`minstret`, exact under
//! QEMU's `-icount`) for one job's protocol work, hashing and signature,
//! and for the signature alone.
#![no_std]
#![no_main]

mod board;
mod secure_element;
mod uart_link;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::{size_of, MaybeUninit};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use tessera_core::agent::DisconnectReason;
use tessera_core::attest::ChainState;
use tessera_core::limits::CHUNK_SIZE;
use tessera_core::time::Duration;
use tessera_core::wire::{FailReason, JobId, Usage};
use tessera_core::{Agent, Config, Event, Instant, LinearPrice, Policy};
use tessera_firmware_link::{Channel, DeviceInfo, LinkError, ToBridge, ToFirmware};

use crate::secure_element::SecureElement;
use crate::uart_link::{Receiver, Sender, FRAME_BUFFER};

/// Jobs the firmware holds at once.
const SLOTS: usize = 1;
/// Most bytes of one job's kernel and inputs, and of its outputs. The
/// bridge holds them; every byte crosses the UART twice.
const MAX_JOB_BYTES: u64 = 16 << 20;
/// The wait before connecting again after the connection was lost.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// The kernel's time limit when its job has no deadline.
const DEFAULT_RUN_MS: u32 = 60_000;
/// How long the firmware waits for the bridge to acknowledge its halt.
const HALT_WAIT: Duration = Duration::from_secs(5);

// ----- memory ---------------------------------------------------------------

/// Memory in .bss, handed out once as `&'static mut`.
struct Once<T> {
    taken: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reachable only through `take`, which hands out a
// single reference for all time.
unsafe impl<T: Send> Sync for Once<T> {}

impl<T> Once<T> {
    const fn new(value: T) -> Self {
        Once {
            taken: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, the first time; `None` after. (A `&mut` from `&self`:
    /// the flag makes it the only one.)
    #[allow(clippy::mut_from_ref)]
    fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: `taken` was false and is now true, so this is the only
        // reference to the value that exists or ever will.
        Some(unsafe { &mut *self.value.get() })
    }
}

static RX_BUFFER: Once<[u8; FRAME_BUFFER]> = Once::new([0; FRAME_BUFFER]);
static TX_BUFFER: Once<[u8; FRAME_BUFFER]> = Once::new([0; FRAME_BUFFER]);
static AGENT: Once<MaybeUninit<Agent<SecureElement>>> = Once::new(MaybeUninit::uninit());

extern "C" {
    /// Defined nowhere: a call to the allocator fails the link.
    fn tessera_firmware_must_not_allocate() -> !;
}

/// An allocator that cannot allocate. One must exist: ring 0.17 declares
/// `extern crate alloc` in every build, so a bare-metal binary linking it
/// needs a `#[global_allocator]` even though nothing calls it. The image
/// links only if nothing reachable allocates.
struct NoAllocator;

// SAFETY: neither method returns; no memory is ever handed out.
unsafe impl GlobalAlloc for NoAllocator {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        // SAFETY: the function does not exist; if this is reachable the
        // image does not link.
        unsafe { tessera_firmware_must_not_allocate() }
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
        // SAFETY: as above.
        unsafe { tessera_firmware_must_not_allocate() }
    }
}

#[global_allocator]
static ALLOCATOR: NoAllocator = NoAllocator;

/// ring reaches getrandom although Ed25519 signing needs no randomness;
/// nothing here asks it for any.
fn no_entropy(_: &mut [u8]) -> Result<(), getrandom::Error> {
    Err(getrandom::Error::UNSUPPORTED)
}
getrandom::register_custom_getrandom!(no_entropy);

// ----- faults ---------------------------------------------------------------

/// Why the firmware stops.
#[derive(Debug)]
enum Fault {
    /// The UART link lost its framing.
    Link(LinkError),
    /// The agent refused a call the firmware cannot do without.
    Agent(tessera_core::Error),
    /// The secure element did not open.
    Key,
    /// Static memory was asked for twice.
    Memory,
}

impl From<LinkError> for Fault {
    fn from(e: LinkError) -> Self {
        Fault::Link(e)
    }
}

impl From<tessera_core::Error> for Fault {
    fn from(e: tessera_core::Error) -> Self {
        Fault::Agent(e)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Link(e) => write!(f, "UART link: {e}"),
            Fault::Agent(e) => write!(f, "agent: {e}"),
            Fault::Key => f.write_str("the secure element refused its key"),
            Fault::Memory => f.write_str("static memory taken twice"),
        }
    }
}

/// Bytes as hex.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    say!("panic: {info}");
    board::exit(101)
}

/// Where `trap_entry` goes: every trap is fatal here.
#[no_mangle]
extern "C" fn firmware_trap(mcause: usize, mepc: usize, mtval: usize) -> ! {
    let overflow = if board::in_stack_guard(mtval) {
        " (stack overflow)"
    } else {
        ""
    };
    say!("trap: mcause {mcause:#x} at pc {mepc:#010x}, mtval {mtval:#010x}{overflow}");
    board::exit(102)
}

// ----- start-up -------------------------------------------------------------

/// Where `_start` goes, on the painted stack.
#[no_mangle]
extern "C" fn firmware_main() -> ! {
    board::init();
    let (Some(rx), Some(tx)) = (RX_BUFFER.take(), TX_BUFFER.take()) else {
        board::exit(2)
    };
    let mut rx = Receiver::new(rx);
    let mut tx = Sender::new(tx);
    let code = match serve(&mut rx, &mut tx) {
        Ok(()) => 0,
        Err(e) => {
            say!("stopping: {e}");
            1
        }
    };
    halt(&mut rx, &mut tx, code);
    board::exit(u16::from(code))
}

/// Waits for the bridge's answer to `Boot`.
fn device_info(rx: &mut Receiver) -> Result<DeviceInfo, Fault> {
    loop {
        match rx.poll() {
            Some(Ok((Channel::Device, payload))) => match ToFirmware::decode(payload) {
                Ok(ToFirmware::Device(info)) => return Ok(info),
                Ok(_) => {}
                Err(e) => say!("bridge: unreadable command: {e}"),
            },
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => {
                board::wait(None);
            }
        }
    }
}

/// Boots the agent, serves until drained, and reports what it cost.
fn serve(rx: &mut Receiver, tx: &mut Sender) -> Result<(), Fault> {
    say!(
        "boot: tessera-core {} on riscv32imac, {} KiB of stack",
        env!("CARGO_PKG_VERSION"),
        board::stack_size() / 1024
    );
    let (agent, jobs_to_serve) = start_agent(rx, tx)?;
    let boot_peak = board::stack_peak();
    board::repaint_stack();

    let mut firmware = Firmware {
        agent,
        tx,
        jobs_to_serve,
        acknowledged: 0,
        slots: [None; SLOTS],
        reconnect_at: None,
        finished: false,
        core_instret: 0,
        poll_instret: 0,
        output_instret: 0,
        idle: 0,
        mark: None,
        receipt_signature_instret: 0,
    };
    firmware.tx.command(&ToBridge::Connect)?;
    firmware.run(rx)?;

    let stats = firmware.agent.stats();
    say!(
        "served: {} job(s) completed, earnings {}, {} signature(s) by the secure element",
        stats.jobs_completed,
        stats.earnings,
        secure_element::stats().signatures
    );
    say!("measure agent_bytes={}", size_of::<Agent<SecureElement>>());
    say!("measure stack_size={}", board::stack_size());
    say!("measure stack_peak_boot={boot_peak}");
    say!("measure stack_peak_serving={}", board::stack_peak());
    Ok(())
}

/// Asks the bridge for the device, opens the secure element and makes the
/// agent in static memory; returns it and the jobs to serve. Never
/// inlined: the agent is made on this function's stack and moved into
/// place, and that frame is gone before the firmware serves.
#[inline(never)]
fn start_agent(
    rx: &mut Receiver,
    tx: &mut Sender,
) -> Result<(&'static mut Agent<SecureElement>, u32), Fault> {
    tx.command(&ToBridge::Boot)?;
    let info = device_info(rx)?;
    let element = SecureElement::open().map_err(|_| Fault::Key)?;
    let device = info.capabilities.name.clone();
    let config = Config {
        agent_version: [0, 1, 0],
        boot_id: info.entropy,
        capabilities: info.capabilities,
        policy: Policy {
            max_concurrent: SLOTS as u8,
            price: LinearPrice {
                base: 100,
                per_gpu_ms: 10,
                per_mib_in: 2,
                per_mib_out: 2,
            },
            floor: 120,
            max_bytes_in: MAX_JOB_BYTES,
            max_bytes_out: MAX_JOB_BYTES,
            ..Policy::default()
        },
        persist_results: false,
    };
    let memory = AGENT.take().ok_or(Fault::Memory)?;
    let agent = Agent::new_in(memory, config, element, ChainState::default())?;
    say!(
        "device: {device} (at the bridge); key {}",
        Hex(&agent.public_key())
    );
    Ok((agent, info.jobs))
}

/// Tells the bridge the firmware stops and waits (bounded) until it has
/// read everything before.
fn halt(rx: &mut Receiver, tx: &mut Sender, code: u8) {
    if tx.command(&ToBridge::Halt { code }).is_err() {
        return;
    }
    let until = board::now() + HALT_WAIT;
    loop {
        match rx.poll() {
            Some(Ok((Channel::Device, payload))) => {
                if let Ok(ToFirmware::HaltAck) = ToFirmware::decode(payload) {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => return,
            None => {
                if board::now() >= until {
                    return;
                }
                board::wait(Some(until));
            }
        }
    }
}

// ----- serving --------------------------------------------------------------

/// Instructions retired by an expression, added to a counter.
macro_rules! metered {
    ($counter:expr, $call:expr) => {{
        let start = board::instret();
        let result = $call;
        $counter += board::instret().wrapping_sub(start);
        result
    }};
}

/// Where a job's measurement started.
#[derive(Clone, Copy)]
struct Mark {
    /// `Firmware::core_instret` then.
    core: u64,
    /// `Firmware::output_instret` then.
    output: u64,
    /// `Firmware::poll_instret` then.
    poll: u64,
    /// `minstret` then.
    all: u64,
    /// `Firmware::idle` then.
    idle: u64,
}

/// A job the firmware holds.
#[derive(Clone, Copy)]
struct Slot {
    job: JobId,
    /// Metered by the bridge's run, signed into the receipt.
    usage: Usage,
}

struct Firmware<'a> {
    agent: &'static mut Agent<SecureElement>,
    tx: &'a mut Sender,
    /// Jobs to serve before draining; 0: no end.
    jobs_to_serve: u32,
    acknowledged: u32,
    slots: [Option<Slot>; SLOTS],
    reconnect_at: Option<Instant>,
    /// The agent drained and said goodbye.
    finished: bool,
    /// Instructions retired inside tessera-core calls that did work (the
    /// secure element's signatures included).
    core_instret: u64,
    /// Instructions retired by the main loop's polls that found nothing
    /// to do (no bytes to send, no event, no timer due).
    poll_instret: u64,
    /// Of those, inside `send_output`: hashing and framing outputs.
    output_instret: u64,
    /// Of `minstret`'s count, what waiting for the UART or a timer took.
    idle: u64,
    /// The first job's start, until it is measured.
    mark: Option<Mark>,
    /// Instructions the last receipt's signature took.
    receipt_signature_instret: u32,
}

impl Firmware<'_> {
    /// The main loop: drain the agent, then wait for the UART or a timer.
    fn run(&mut self, rx: &mut Receiver) -> Result<(), Fault> {
        loop {
            self.service()?;
            if self.finished {
                return Ok(());
            }
            if self.reconnect_at.is_some_and(|t| board::now() >= t) {
                self.reconnect_at = None;
                self.tx.command(&ToBridge::Connect)?;
            }
            match rx.poll() {
                Some(Ok((channel, payload))) => self.frame(channel, payload)?,
                Some(Err(e)) => return Err(e.into()),
                None => self.idle += board::wait(self.next_wake()),
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        match (self.agent.poll_timeout(), self.reconnect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends what the agent queued, runs its due timers and handles its
    /// events, until none is left.
    fn service(&mut self) -> Result<(), Fault> {
        loop {
            self.transmit()?;
            let now = board::now();
            let start = board::instret();
            let due = self.agent.poll_timeout().is_some_and(|t| now >= t);
            self.poll_instret += board::instret().wrapping_sub(start);
            if due {
                metered!(self.core_instret, self.agent.handle_timeout(now));
            }
            let start = board::instret();
            let event = self.agent.poll_event();
            let spent = board::instret().wrapping_sub(start);
            let Some(event) = event else {
                self.poll_instret += spent;
                return self.transmit();
            };
            self.core_instret += spent;
            self.event(event)?;
        }
    }

    /// Sends the agent's queued protocol bytes to the coordinator.
    fn transmit(&mut self) -> Result<(), Fault> {
        loop {
            let now = board::now();
            let out = self.tx.payload_buffer();
            let start = board::instret();
            let queued = self.agent.poll_transmit(now, out);
            let spent = board::instret().wrapping_sub(start);
            let Some(n) = queued else {
                self.poll_instret += spent;
                return Ok(());
            };
            self.core_instret += spent;
            self.tx.send_payload(Channel::Protocol, n)?;
        }
    }

    fn frame(&mut self, channel: Channel, payload: &[u8]) -> Result<(), Fault> {
        match channel {
            Channel::Protocol => self.feed(payload),
            Channel::Device => match ToFirmware::decode(payload) {
                Ok(command) => self.device(command),
                Err(e) => {
                    say!("bridge: unreadable command: {e}");
                    Ok(())
                }
            },
            // The bridge sends no log lines.
            Channel::Log => Ok(()),
        }
    }

    /// Feeds protocol bytes from the coordinator to the agent.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        let mut at = 0;
        let mut stalled = 0;
        while at < bytes.len() {
            let idle = self.agent.active_jobs() == 0;
            let before = Mark {
                core: self.core_instret,
                output: self.output_instret,
                poll: self.poll_instret,
                all: board::instret(),
                idle: self.idle,
            };
            let now = board::now();
            let used = match metered!(
                self.core_instret,
                self.agent.handle_input(now, &bytes[at..])
            ) {
                Ok(n) => n,
                Err(e) => {
                    if e.consumed == 0 && !self.connected() {
                        // Bytes of a session the agent already left.
                        return Ok(());
                    }
                    say!("from the coordinator: {}", e.error);
                    e.consumed
                }
            };
            if idle && self.agent.active_jobs() > 0 && self.mark.is_none() && self.acknowledged == 0
            {
                // The first job's offer was in these bytes: measure from here.
                self.mark = Some(before);
            }
            at += used;
            self.service()?;
            stalled = if used == 0 { stalled + 1 } else { 0 };
            if stalled > 2 {
                say!("input stalled: {} bytes dropped", bytes.len() - at);
                return Ok(());
            }
        }
        Ok(())
    }

    fn connected(&self) -> bool {
        !matches!(
            self.agent.state(),
            tessera_core::ConnState::Disconnected | tessera_core::ConnState::Closed
        )
    }

    fn slot(&self, job: JobId) -> Option<&Slot> {
        self.slots.iter().flatten().find(|s| s.job == job)
    }

    fn open_slot(&mut self, job: JobId) {
        if let Some(free) = self.slots.iter_mut().find(|s| s.is_none()) {
            *free = Some(Slot {
                job,
                usage: Usage::default(),
            });
        }
    }

    /// Drops a job here and at the bridge.
    fn release(&mut self, job: JobId) -> Result<(), Fault> {
        for s in self.slots.iter_mut() {
            if s.is_some_and(|s| s.job == job) {
                *s = None;
            }
        }
        Ok(self.tx.command(&ToBridge::Release { job })?)
    }

    fn event(&mut self, event: Event) -> Result<(), Fault> {
        let now = board::now();
        match event {
            Event::Ready => say!(
                "session established ({} signature(s) by the secure element)",
                secure_element::stats().signatures
            ),
            Event::JobAssigned { job } => {
                let Some(spec) = self.agent.job_spec(job) else {
                    return Ok(());
                };
                let spec = spec.clone();
                say!(
                    "job {job}: assigned: {} B kernel, {} buffer(s)",
                    spec.kernel.len,
                    spec.buffers.len()
                );
                self.open_slot(job);
                self.tx.command(&ToBridge::Assign(spec))?;
            }
            Event::JobData {
                job,
                stream,
                offset,
                ..
            } => match metered!(self.core_instret, self.agent.input(job)) {
                Some(bytes) => self.tx.command(&ToBridge::Data {
                    job,
                    stream,
                    offset,
                    bytes,
                })?,
                None => say!("job {job}: input of stream {stream} at {offset} not readable"),
            },
            Event::RunJob { job } => {
                let timeout_ms = match self.agent.job_deadline(job) {
                    Some(deadline) => u32::try_from(deadline.saturating_since(now).as_millis())
                        .unwrap_or(u32::MAX),
                    None => DEFAULT_RUN_MS,
                };
                say!("job {job}: inputs verified; run (time limit {timeout_ms} ms)");
                self.tx.command(&ToBridge::Run { job, timeout_ms })?;
            }
            Event::CancelJob { job, reason } => {
                say!("job {job}: cancelled ({reason:?})");
                self.release(job)?;
            }
            Event::ResendOutputs { job } => {
                say!("job {job}: sending the outputs again");
                self.next_output(job)?;
            }
            Event::ResultAcknowledged { job } => {
                say!("job {job}: result acknowledged");
                self.release(job)?;
                self.acknowledged(job)?;
            }
            Event::ResultRefused { job, reason } => {
                say!("job {job}: result refused (reason {reason})");
                self.release(job)?;
            }
            Event::PeerError { code, job } => say!("coordinator error {code} (job {job})"),
            Event::Disconnect { reason } => {
                self.tx.command(&ToBridge::Close)?;
                say!("disconnected ({reason:?})");
                if reason == DisconnectReason::Drained {
                    self.finished = true;
                } else {
                    self.reconnect_at = Some(now + RECONNECT_DELAY);
                }
            }
            // Results are not persisted (`Config::persist_results` is off):
            // a reboot loses what waits for an acknowledgement.
            Event::PersistResult { .. } => {}
            _ => {}
        }
        Ok(())
    }

    fn device(&mut self, command: ToFirmware<'_>) -> Result<(), Fault> {
        let now = board::now();
        match command {
            ToFirmware::LinkUp => {
                if let Err(e) = metered!(self.core_instret, self.agent.connect(now)) {
                    say!("connect: {e}");
                }
            }
            ToFirmware::LinkDown => {
                metered!(self.core_instret, self.agent.disconnected(now));
                if !self.finished && self.reconnect_at.is_none() {
                    say!(
                        "link down; connecting again in {} s",
                        RECONNECT_DELAY.as_millis() / 1000
                    );
                    self.reconnect_at = Some(now + RECONNECT_DELAY);
                }
            }
            ToFirmware::RunDone { job, usage } => {
                say!(
                    "job {job}: kernel ran: {} us GPU, {} dispatch(es)",
                    usage.gpu_time_us,
                    usage.dispatches
                );
                for s in self.slots.iter_mut().flatten() {
                    if s.job == job {
                        s.usage = usage;
                    }
                }
                self.next_output(job)?;
            }
            ToFirmware::RunFailed {
                job,
                reason,
                detail,
                usage,
            } => {
                say!("job {job}: kernel failed: {reason:?}, detail {detail}");
                self.fail(job, reason, detail, usage);
            }
            ToFirmware::Output {
                job,
                buffer,
                offset,
                bytes,
            } => self.output(job, buffer, offset, bytes)?,
            ToFirmware::Device(_) | ToFirmware::HaltAck => {}
        }
        Ok(())
    }

    /// Ends a job with a signed failure.
    fn fail(&mut self, job: JobId, reason: FailReason, detail: u32, usage: Usage) {
        let now = board::now();
        if let Err(e) = metered!(
            self.core_instret,
            self.agent.fail_job(now, job, reason, detail, usage)
        ) {
            say!("job {job}: fail: {e}");
        }
    }

    /// Asks the bridge for the next chunk of outputs, or, when all were
    /// sent, signs and sends the outcome.
    fn next_output(&mut self, job: JobId) -> Result<(), Fault> {
        let cursor = metered!(self.core_instret, self.agent.output_cursor(job));
        if let (Some((buffer, offset)), Some(spec)) = (cursor, self.agent.job_spec(job)) {
            let len = spec.buffers.get(buffer as usize).map_or(0, |b| b.len);
            if offset < len {
                let n = (len - offset).min(CHUNK_SIZE as u64) as u32;
                self.tx.command(&ToBridge::Read {
                    job,
                    buffer,
                    offset,
                    len: n,
                })?;
                return Ok(());
            }
        }
        let usage = self.slot(job).map_or(Usage::default(), |s| s.usage);
        let now = board::now();
        let signed_before = secure_element::stats().signatures;
        match metered!(self.core_instret, self.agent.finish_job(now, job, usage)) {
            Ok(()) => {
                let element = secure_element::stats();
                if element.signatures > signed_before {
                    self.receipt_signature_instret = element.last_signature_instret;
                    say!(
                        "job {job}: receipt signed ({} instructions in the secure element)",
                        element.last_signature_instret
                    );
                } else {
                    say!("job {job}: outputs sent again, with the receipt signed before");
                }
            }
            Err(e) => say!("job {job}: finish: {e}"),
        }
        Ok(())
    }

    /// Output bytes from the bridge, as asked for by `next_output`.
    fn output(&mut self, job: JobId, buffer: u8, offset: u64, bytes: &[u8]) -> Result<(), Fault> {
        if self.agent.output_cursor(job) != Some((buffer, offset)) || bytes.is_empty() {
            say!("job {job}: the bridge sent no outputs for buffer {buffer} at {offset}");
            self.fail(job, FailReason::Host, 0, Usage::default());
            return Ok(());
        }
        let mut at = 0;
        while at < bytes.len() {
            match self.send_output(job, buffer, &bytes[at..]) {
                Ok(0) => {
                    say!(
                        "job {job}: {} output bytes at {offset} not taken",
                        bytes.len() - at
                    );
                    self.fail(job, FailReason::Host, 0, Usage::default());
                    return Ok(());
                }
                Ok(n) => at += n,
                Err(Fault::Agent(e)) => {
                    // The bridge's bytes do not fit the job's outputs (too
                    // many, say): the job fails now rather than at its
                    // deadline.
                    say!("job {job}: output: {e}");
                    self.fail(job, FailReason::Host, 0, Usage::default());
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        self.next_output(job)
    }

    /// Hands output bytes to the agent, which hashes them into the job's
    /// output Merkle tree and writes their output-chunk frames (after any
    /// frames it had queued) into the transmit buffer, and sends those.
    /// Returns how many bytes it took. The firmware's only call of
    /// `Agent::send_output`.
    fn send_output(&mut self, job: JobId, buffer: u8, data: &[u8]) -> Result<usize, Fault> {
        loop {
            let now = board::now();
            let out = self.tx.payload_buffer();
            let start = board::instret();
            let sent = self.agent.send_output(now, job, buffer, data, out);
            let spent = board::instret().wrapping_sub(start);
            self.core_instret += spent;
            self.output_instret += spent;
            let sent = sent?;
            self.tx.send_payload(Channel::Protocol, sent.written)?;
            // Nothing taken but queued frames written: the buffer had no
            // room left for the chunk; it has now.
            if sent.taken > 0 || sent.written == 0 {
                return Ok(sent.taken);
            }
        }
    }

    /// A result was acknowledged: measure the first job, and drain once
    /// enough were served.
    fn acknowledged(&mut self, job: JobId) -> Result<(), Fault> {
        self.acknowledged += 1;
        if let Some(mark) = self.mark.take() {
            let busy = board::instret()
                .wrapping_sub(mark.all)
                .saturating_sub(self.idle - mark.idle);
            say!(
                "measure job_instret_core={} (job {job}, offer to acknowledgement: protocol, hashing, signature)",
                self.core_instret - mark.core
            );
            say!(
                "measure job_instret_output={} (of which send_output: output hashing and framing)",
                self.output_instret - mark.output
            );
            say!(
                "measure job_instret_polls={} (the main loop's polls that found nothing to do)",
                self.poll_instret - mark.poll
            );
            say!("measure job_instret_firmware={busy} (everything the hart retired but waits, UART I/O included)");
            say!(
                "measure sign_instret={} (the receipt's Ed25519 signature alone)",
                self.receipt_signature_instret
            );
        }
        if self.jobs_to_serve > 0 && self.acknowledged >= self.jobs_to_serve {
            say!("served {} job(s): draining", self.acknowledged);
            metered!(self.core_instret, self.agent.drain(board::now()))?;
        }
        Ok(())
    }
}
