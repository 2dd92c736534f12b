//! Links the whole provider agent into a bare-metal RISC-V program whose
//! allocator cannot allocate: its `alloc` and `dealloc` call a function that
//! exists nowhere, so the program links only if no code that can run calls
//! the allocator (link-time optimisation drops what nothing reaches). It
//! drives one session far enough to sign evidence, so the decoding, state
//! machine and signing paths are all linked. It is never run; `ci/test`
//! builds it:
//!
//! ```text
//! cargo build --release --manifest-path examples/no-alloc/Cargo.toml \
//!     --target riscv32imac-unknown-none-elf
//! ```
#![no_std]
#![no_main]

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use core::panic::PanicInfo;

use tessera_core::attest::{ChainState, Ed25519Signer};
use tessera_core::wire::{Message, Welcome};
use tessera_core::{Agent, Config, Instant};

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

extern "C" {
    /// Defined nowhere: a call to the allocator fails the link.
    fn tessera_core_must_not_allocate() -> !;
}

/// An allocator that cannot allocate. One must exist: ring 0.17 declares
/// `extern crate alloc` in every build (its `testutil` module), so a
/// bare-metal binary that links ring needs a `#[global_allocator]` even
/// though nothing calls it.
struct NoAllocator;

// SAFETY: neither method returns; no memory is ever handed out.
unsafe impl GlobalAlloc for NoAllocator {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        // SAFETY: the function does not exist; if this is reachable the
        // program does not link, which is the point.
        unsafe { tessera_core_must_not_allocate() }
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
        // SAFETY: as above.
        unsafe { tessera_core_must_not_allocate() }
    }
}

#[global_allocator]
static ALLOCATOR: NoAllocator = NoAllocator;

/// ring reaches getrandom even though signing with a given key needs no
/// randomness; firmware would read its hardware RNG here.
fn no_entropy(_: &mut [u8]) -> Result<(), getrandom::Error> {
    Err(getrandom::Error::UNSUPPORTED)
}
getrandom::register_custom_getrandom!(no_entropy);

/// What the agent's memory is made of on this target, in bytes (see
/// `Footprint`), kept in the image for `ci/bench` and the README's table to
/// read: total, job slot, jobs, event slot, events, input, output queue,
/// signer, rest.
#[used]
#[no_mangle]
static TESSERA_FOOTPRINT: [u32; 9] = {
    let f = Agent::<Ed25519Signer>::footprint();
    [
        f.total as u32,
        f.job_slot as u32,
        f.jobs as u32,
        f.event_slot as u32,
        f.events as u32,
        f.input as u32,
        f.output_queue as u32,
        f.signer as u32,
        f.rest as u32,
    ]
};

/// The program's entry point (the ELF default, `_start`).
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let seed: [u8; 32] = black_box([7; 32]);
    if let Ok(signer) = Ed25519Signer::from_seed(&seed) {
        if let Ok(mut agent) = Agent::new(Config::default(), signer, ChainState::default()) {
            let now = Instant::from_micros(black_box(1));
            let _ = agent.connect(now);
            let mut frame = [0u8; 512];
            let welcome = Message::Welcome(Welcome {
                version: 1,
                challenge: black_box([1; 32]),
                heartbeat_ms: 0,
            });
            if let Ok(n) = welcome.encode(&mut frame) {
                let _ = agent.handle_input(now, &frame[..n]);
            }
            let mut out = [0u8; 1024];
            while let Some(n) = agent.poll_transmit(now, &mut out) {
                black_box(&out[..n]);
            }
            black_box(&agent);
        }
    }
    loop {}
}
