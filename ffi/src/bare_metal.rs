//! What a bare-metal static library needs from the crate that builds it
//! (`riscv32imac-unknown-none-elf` and other `target_os = "none"` targets,
//! without the `std` feature): a panic handler, a global allocator and a
//! random source for ring. None of them is used by the agent.

use core::alloc::{GlobalAlloc, Layout};
use core::panic::PanicInfo;

extern "C" {
    /// The firmware's fatal-error handler: it must not return. The agent is
    /// built not to panic on any input (property-tested and fuzzed); a panic
    /// is a bug in the library, and the firmware decides what then happens
    /// (reset, log, halt).
    fn tessera_platform_abort() -> !;

    /// Defined nowhere: a call to the allocator makes the firmware's link
    /// fail with this name. ci/test checks that the library does not
    /// reference it at all.
    fn tessera_no_alloc_violation() -> !;
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    // SAFETY: the firmware provides it (documented in include/tessera.h).
    unsafe { tessera_platform_abort() }
}

/// An allocator that cannot allocate: ring 0.17 declares `extern crate
/// alloc`, so the library needs one, though nothing calls it.
struct NoAllocator;

// SAFETY: neither method returns; no memory is ever handed out.
unsafe impl GlobalAlloc for NoAllocator {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        // SAFETY: defined nowhere; reaching it fails the link, the point.
        unsafe { tessera_no_alloc_violation() }
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
        // SAFETY: as above.
        unsafe { tessera_no_alloc_violation() }
    }
}

#[global_allocator]
static ALLOCATOR: NoAllocator = NoAllocator;

/// ring reaches getrandom though signing with a given key needs no
/// randomness.
fn no_entropy(_: &mut [u8]) -> Result<(), getrandom::Error> {
    Err(getrandom::Error::UNSUPPORTED)
}
getrandom::register_custom_getrandom!(no_entropy);
