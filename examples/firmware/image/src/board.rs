//! QEMU's `virt` machine as the firmware uses it: start-up, the 16550 UART,
//! the CLINT's timer, the PLIC (only to wake from `wfi`), the test device
//! that ends the emulation, the instruction counter and the stack.
//!
//! One hart runs everything and no interrupt handler ever runs: interrupts
//! stay globally disabled, and `wfi` still returns when the UART has data
//! or the timer is due (the RISC-V privileged spec, "Wait for Interrupt").

use core::arch::{asm, global_asm};
use core::ptr::{read_volatile, write_volatile};

use tessera_core::Instant;

/// The word the stack is filled with at boot; the lowest word that no
/// longer holds it shows how deep the stack went.
pub const STACK_PAINT: u32 = 0x5eed_5eed;

// The entry point. It paints the stack, clears .bss, points the trap
// vector at `trap_entry` and enters `firmware_main` on the stack the
// linker script sets aside. Other harts (none on the default virt machine)
// park.
global_asm!(
    r#"
    .section .text.start, "ax"
    .globl _start
_start:
    csrr    t0, mhartid
    bnez    t0, 9f
    la      sp, __stack_top
    la      t0, __stack_bottom
    li      t1, {paint}
1:  bgeu    t0, sp, 2f
    sw      t1, 0(t0)
    addi    t0, t0, 4
    j       1b
2:  la      t0, __bss_start
    la      t1, __bss_end
3:  bgeu    t0, t1, 4f
    sw      zero, 0(t0)
    addi    t0, t0, 4
    j       3b
4:  la      t0, trap_entry
    csrw    mtvec, t0
    j       firmware_main
9:  wfi
    j       9b

    .text
    .align  2
trap_entry:
    la      sp, __stack_top
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    j       firmware_trap
"#,
    paint = const STACK_PAINT,
);

extern "C" {
    static __stack_guard: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
}

const UART: usize = 0x1000_0000;
const UART_RBR_THR: usize = UART;
const UART_IER: usize = UART + 1;
const UART_FCR: usize = UART + 2;
const UART_LCR: usize = UART + 3;
const UART_LSR: usize = UART + 5;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;
const UART_IRQ: usize = 10;

const CLINT_MTIMECMP: usize = 0x0200_4000;
const CLINT_MTIME: usize = 0x0200_bff8;
/// The CLINT's timebase on virt: 10 MHz.
const TICKS_PER_MICRO: u64 = 10;

const PLIC: usize = 0x0c00_0000;
const PLIC_ENABLE_CTX0: usize = PLIC + 0x2000;
const PLIC_THRESHOLD_CTX0: usize = PLIC + 0x20_0000;
const PLIC_CLAIM_CTX0: usize = PLIC + 0x20_0004;

const TEST_DEVICE: usize = 0x0010_0000;
const TEST_PASS: u32 = 0x5555;
const TEST_FAIL: u32 = 0x3333;

const MIE_MTIE: usize = 1 << 7;
const MIE_MEIE: usize = 1 << 11;

fn read8(addr: usize) -> u8 {
    // SAFETY: `addr` is one of the UART registers above, a device register
    // of the virt machine, always mapped; reading it has no effect beyond
    // the device's (a read of RBR takes the byte it returns).
    unsafe { read_volatile(addr as *const u8) }
}

fn write8(addr: usize, value: u8) {
    // SAFETY: as in `read8`; the UART registers are byte-wide.
    unsafe { write_volatile(addr as *mut u8, value) }
}

fn read32(addr: usize) -> u32 {
    // SAFETY: `addr` is a 32-bit register of the CLINT or PLIC above,
    // always mapped and 4-byte aligned.
    unsafe { read_volatile(addr as *const u32) }
}

fn write32(addr: usize, value: u32) {
    // SAFETY: as in `read32`; the test device's register too.
    unsafe { write_volatile(addr as *mut u32, value) }
}

/// Sets up the UART, the wake-up sources and the stack guard. Call once,
/// first.
pub fn init() {
    // The fastest line rate (divisor 1), 8 data bits, no parity, 1 stop
    // bit. QEMU times the receive FIFO's timeout by it.
    write8(UART_LCR, 0x80);
    write8(UART_RBR_THR, 1);
    write8(UART_IER, 0);
    write8(UART_LCR, 0x03);
    // FIFOs on and cleared, the receive interrupt at 14 bytes: QEMU then
    // hands the UART 14 bytes at a time, not one, and the firmware wakes
    // once for them (or at the FIFO's timeout, for fewer).
    write8(UART_FCR, 0xc7);
    // Interrupt on received data (only to end a `wfi`).
    write8(UART_IER, 0x01);
    write32(PLIC + 4 * UART_IRQ, 1);
    write32(PLIC_ENABLE_CTX0, 1 << UART_IRQ);
    write32(PLIC_THRESHOLD_CTX0, 0);
    write32(CLINT_MTIMECMP + 4, u32::MAX);
    // SAFETY: sets the machine timer and external interrupt enables; with
    // mstatus.MIE clear (its reset value, never set) no trap is taken, so
    // this only lets `wfi` return when either is pending.
    unsafe { asm!("csrs mie, {0}", in(reg) MIE_MTIE | MIE_MEIE, options(nomem, nostack)) };
    guard_stack();
}

/// Bytes of the guard below the stack (`STACK_GUARD` in link.x, which
/// aligns it to its size). A frame larger than this could step over it.
const STACK_GUARD: usize = 4096;

/// Makes the guard below the stack inaccessible, even to machine mode:
/// PMP entry 0, locked, naturally aligned power of two, no permissions.
/// Other addresses match no entry and stay open to machine mode.
fn guard_stack() {
    let base = &raw const __stack_guard as usize;
    // NAPOT: the base over 4, with the low bits saying the size.
    let pmpaddr = (base >> 2) | ((STACK_GUARD >> 3) - 1);
    // L (locked) | A = NAPOT, R = W = X = 0.
    let pmpcfg: usize = 0x98;
    // SAFETY: only PMP entry 0 changes; it covers the guard the linker
    // script reserves below the stack (aligned to its size there), which
    // nothing uses.
    unsafe {
        asm!(
            "csrw pmpaddr0, {addr}",
            "csrw pmpcfg0, {cfg}",
            addr = in(reg) pmpaddr,
            cfg = in(reg) pmpcfg,
            options(nomem, nostack),
        )
    };
}

/// The next received byte, if the UART holds one.
pub fn uart_read() -> Option<u8> {
    if read8(UART_LSR) & LSR_DATA_READY != 0 {
        Some(read8(UART_RBR_THR))
    } else {
        None
    }
}

/// Sends bytes, waiting for room in the transmitter.
pub fn uart_write(bytes: &[u8]) {
    for &b in bytes {
        while read8(UART_LSR) & LSR_THR_EMPTY == 0 {}
        write8(UART_RBR_THR, b);
    }
}

fn mtime() -> u64 {
    loop {
        let hi = read32(CLINT_MTIME + 4);
        let lo = read32(CLINT_MTIME);
        if read32(CLINT_MTIME + 4) == hi {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

fn set_timer(at: u64) {
    // High word first at its maximum, so that no intermediate value is due.
    write32(CLINT_MTIMECMP + 4, u32::MAX);
    write32(CLINT_MTIMECMP, at as u32);
    write32(CLINT_MTIMECMP + 4, (at >> 32) as u32);
}

/// Now, from the CLINT's timer (with `-icount`, QEMU's instruction clock;
/// while the hart waits, it follows real time).
pub fn now() -> Instant {
    Instant::from_micros(mtime() / TICKS_PER_MICRO)
}

/// Waits until the UART has a byte or `deadline` passes (never, if none).
/// Returns how much of [`instret`]'s count the wait took: under QEMU's
/// `-icount` the counter is the guest clock in nanoseconds, which runs in
/// real time while the hart sleeps.
pub fn wait(deadline: Option<Instant>) -> u64 {
    let start = instret();
    wait_inner(deadline);
    instret().wrapping_sub(start)
}

fn wait_inner(deadline: Option<Instant>) {
    // Claim and complete the UART's interrupt so the PLIC raises it again
    // for data that arrives from here on.
    let claimed = read32(PLIC_CLAIM_CTX0);
    if claimed != 0 {
        write32(PLIC_CLAIM_CTX0, claimed);
    }
    if read8(UART_LSR) & LSR_DATA_READY != 0 {
        return;
    }
    let at = deadline.map_or(u64::MAX, |d| d.micros.saturating_mul(TICKS_PER_MICRO));
    if mtime() >= at {
        return;
    }
    set_timer(at);
    // SAFETY: `wfi` only pauses the hart until an enabled interrupt is
    // pending (the UART's or the timer's, set up above); none is taken.
    unsafe { asm!("wfi", options(nomem, nostack)) };
    set_timer(u64::MAX);
}

/// Instructions retired since reset (`minstret`). Under QEMU's
/// `-icount shift=0` it reads the guest clock in nanoseconds: one per
/// instruction while the hart runs, so exact over code that does not wait;
/// real time while it sleeps in [`wait`].
pub fn instret() -> u64 {
    loop {
        let (hi, lo, hi2): (u32, u32, u32);
        // SAFETY: reads the machine instruction counter; no side effects.
        unsafe {
            asm!(
                "csrr {hi}, minstreth",
                "csrr {lo}, minstret",
                "csrr {hi2}, minstreth",
                hi = out(reg) hi,
                lo = out(reg) lo,
                hi2 = out(reg) hi2,
                options(nomem, nostack),
            )
        };
        if hi == hi2 {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

/// Ends the emulation: QEMU exits with status 0 for code 0, else `code`.
pub fn exit(code: u16) -> ! {
    let value = if code == 0 {
        TEST_PASS
    } else {
        (u32::from(code) << 16) | TEST_FAIL
    };
    write32(TEST_DEVICE, value);
    loop {
        // SAFETY: as in `wait`; only reached if the test device is absent.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}

/// Whether `addr` lies in the guard below the stack (an access there is a
/// stack overflow).
pub fn in_stack_guard(addr: usize) -> bool {
    let guard = &raw const __stack_guard as usize;
    (guard..guard + STACK_GUARD).contains(&addr)
}

/// The stack's size in bytes.
pub fn stack_size() -> usize {
    &raw const __stack_top as usize - &raw const __stack_bottom as usize
}

/// The most stack used since the stack was last painted, in bytes: from
/// the top down to the lowest word no longer holding [`STACK_PAINT`].
pub fn stack_peak() -> usize {
    let bottom = &raw const __stack_bottom as usize;
    let top = &raw const __stack_top as usize;
    let mut at = bottom;
    while at < top {
        // SAFETY: `at` is a 4-byte aligned address inside the stack the
        // linker script reserves; the words scanned up to the first one
        // written lie below the deepest frame ever used, so nothing live
        // is read.
        if unsafe { read_volatile(at as *const u32) } != STACK_PAINT {
            break;
        }
        at += 4;
    }
    top - at
}

/// Paints the stack below the current stack pointer again, so that
/// [`stack_peak`] measures from here on.
pub fn repaint_stack() {
    let bottom = &raw const __stack_bottom as usize;
    // SAFETY: writes only words from the stack's bottom up to 16 bytes below
    // the current stack pointer: stack memory that no frame uses now (no
    // interrupt handler runs, and RISC-V has no red zone).
    unsafe {
        asm!(
            "addi {end}, sp, -16",
            "1:",
            "bgeu {at}, {end}, 2f",
            "sw {paint}, 0({at})",
            "addi {at}, {at}, 4",
            "j 1b",
            "2:",
            at = inout(reg) bottom => _,
            end = out(reg) _,
            paint = in(reg) STACK_PAINT,
            options(nostack),
        )
    };
}
