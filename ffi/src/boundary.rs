//! The call boundary: every exported function runs inside [`guard`], which
//! turns a panic into `TESSERA_PANIC` instead of unwinding into C, and checks
//! its pointers with the helpers below.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::tessera_result;

/// Runs `f`, turning a panic into [`crate::TESSERA_PANIC`].
#[cfg(feature = "std")]
pub(crate) fn guard(f: impl FnOnce() -> tessera_result) -> tessera_result {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => crate::TESSERA_PANIC,
    }
}

/// Runs `f` (bare metal: a panic halts in the firmware's handler).
#[cfg(not(feature = "std"))]
pub(crate) fn guard(f: impl FnOnce() -> tessera_result) -> tessera_result {
    f()
}

/// Returns `TESSERA_NULL_ARGUMENT` from the enclosing closure when a pointer
/// is NULL.
macro_rules! non_null {
    ($($p:expr),+ $(,)?) => {
        $( if $p.is_null() { return $crate::TESSERA_NULL_ARGUMENT; } )+
    };
}
pub(crate) use non_null;

/// `len` bytes at `ptr` as a slice; an empty slice for `len == 0` (where
/// `ptr` may be NULL); `None` for a NULL pointer with a non-zero length.
///
/// # Safety
/// Unless NULL, `ptr` must point to `len` readable bytes that stay valid and
/// unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, length within isize, and the caller promises `len`
    // readable bytes valid for 'a.
    Some(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// `len` writable bytes at `ptr`; an empty slice for `len == 0`; `None` for
/// a NULL pointer with a non-zero length.
///
/// # Safety
/// Unless NULL, `ptr` must point to `len` writable bytes, not aliased by any
/// other reference, valid for `'a`.
pub(crate) unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, length within isize, and the caller promises `len`
    // writable unaliased bytes valid for 'a.
    Some(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

/// Writes `value` through `out` when it is not NULL.
///
/// # Safety
/// Unless NULL, `out` must be valid for a write of `T`.
pub(crate) unsafe fn write_opt<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL and, by the caller, valid for a write.
        unsafe { out.write(value) }
    }
}

/// Copies `src` into the caller's buffer `(out, out_len)` and writes the
/// length through `written` (when not NULL). If the buffer is too small,
/// nothing is copied, `written` gets the length needed and the result is
/// `TESSERA_BUFFER_TOO_SMALL`. Only the `src.len()` bytes written are
/// touched, whatever `out_len` says.
///
/// # Safety
/// As [`bytes_mut`] for `(out, out_len)`, [`write_opt`] for `written`.
pub(crate) unsafe fn copy_out(
    src: &[u8],
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> tessera_result {
    if out_len < src.len() {
        // SAFETY: the caller's promise for `written`.
        unsafe { write_opt(written, src.len()) };
        return crate::TESSERA_BUFFER_TOO_SMALL;
    }
    if out.is_null() && out_len > 0 {
        return crate::TESSERA_NULL_ARGUMENT;
    }
    // SAFETY: `src.len() <= out_len` writable bytes at `out`, by the
    // caller; the length of a slice, so within `isize::MAX`.
    let Some(dst) = (unsafe { bytes_mut(out, src.len()) }) else {
        return crate::TESSERA_NULL_ARGUMENT;
    };
    dst.copy_from_slice(src);
    // SAFETY: the caller's promise for `written`.
    unsafe { write_opt(written, src.len()) };
    crate::TESSERA_OK
}

/// Puts `value` on the heap and writes its pointer to `out` (checked
/// non-NULL by the caller). Bare metal has no heap: `TESSERA_UNSUPPORTED`.
pub(crate) fn new_handle<T>(value: T, out: *mut *mut T) -> tessera_result {
    // SAFETY: the closure writes the whole value and succeeds.
    unsafe {
        new_handle_with(out, |slot| {
            slot.write(value);
            Ok(())
        })
    }
}

/// As [`new_handle`], with the value made in its place on the heap by
/// `init`: for values too large to pass on a small stack (an agent is
/// about 96 KiB).
///
/// # Safety
/// `init` returns `Ok` only after writing a whole `T` into the slot it is
/// given; on `Err` it leaves nothing there that needs dropping.
pub(crate) unsafe fn new_handle_with<T>(
    out: *mut *mut T,
    init: impl FnOnce(&mut MaybeUninit<T>) -> Result<(), tessera_result>,
) -> tessera_result {
    #[cfg(feature = "std")]
    {
        let mut slot = std::boxed::Box::<T>::new_uninit();
        if let Err(code) = init(&mut slot) {
            return code;
        }
        // SAFETY: `init` succeeded, so it wrote the whole value (the
        // caller's promise).
        let ptr = std::boxed::Box::into_raw(unsafe { slot.assume_init() });
        // SAFETY: `out` was checked non-NULL by the caller of this helper.
        unsafe { out.write(ptr) };
        crate::TESSERA_OK
    }
    #[cfg(not(feature = "std"))]
    {
        let _ = (init, out);
        crate::TESSERA_UNSUPPORTED
    }
}

/// Takes back the value of a handle made by [`new_handle`].
///
/// # Safety
/// `ptr` must come from `new_handle` (or `new_handle_with`) and not be used
/// again.
#[cfg(feature = "std")]
pub(crate) unsafe fn take_handle<T>(ptr: *mut T) -> T {
    // SAFETY: by the caller, `ptr` came from Box::into_raw and is taken once.
    *unsafe { std::boxed::Box::from_raw(ptr) }
}

/// Frees a handle made by [`new_handle`]; NULL is a no-op.
///
/// # Safety
/// `ptr` must be NULL or come from `new_handle` (or `new_handle_with`) and
/// not be used again.
#[cfg(feature = "std")]
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: by the caller, `ptr` came from Box::into_raw and is freed
        // once; dropped where it lies, not moved to the stack first.
        drop(unsafe { std::boxed::Box::from_raw(ptr) });
    }
}

/// A handle that lives either on the library's heap (made by a `_new`
/// function) or in memory its caller gave (made by an `_init` function, the
/// bare-metal way: no allocator).
pub(crate) trait Placeable: Sized {
    /// Whether it was put on the heap by [`new_handle`].
    fn on_heap(&self) -> bool;
}

/// Bytes of memory an `_init` function needs for a `T`, whatever the
/// alignment of the memory given.
pub(crate) const fn footprint<T>() -> usize {
    core::mem::size_of::<T>() + core::mem::align_of::<T>() - 1
}

/// Moves `value` into the caller's `(memory, len)`, aligned, and writes its
/// address to `out` (checked non-NULL by the caller of this helper).
/// `TESSERA_BUFFER_TOO_SMALL` when it does not fit ([`footprint`] always
/// does).
///
/// # Safety
/// `memory` must be NULL or `len` writable bytes that stay valid, and are
/// not used otherwise, until the handle is freed.
pub(crate) unsafe fn place_handle<T>(
    memory: *mut core::ffi::c_void,
    len: usize,
    value: T,
    out: *mut *mut T,
) -> tessera_result {
    // SAFETY: the caller's promise.
    unsafe {
        place_handle_with(memory, len, out, |slot| {
            slot.write(value);
            Ok(())
        })
    }
}

/// As [`place_handle`], with the value made in its place by `init`, as
/// for [`new_handle_with`]. On an error the memory holds nothing to drop.
///
/// # Safety
/// As [`place_handle`], and `init` returns `Ok` only after writing a whole
/// `T` into the slot it is given; on `Err` it leaves nothing there that
/// needs dropping.
pub(crate) unsafe fn place_handle_with<T>(
    memory: *mut core::ffi::c_void,
    len: usize,
    out: *mut *mut T,
    init: impl FnOnce(&mut MaybeUninit<T>) -> Result<(), tessera_result>,
) -> tessera_result {
    if memory.is_null() {
        return crate::TESSERA_NULL_ARGUMENT;
    }
    let skip = (memory as *mut u8).align_offset(core::mem::align_of::<T>());
    if skip == usize::MAX || len < skip || len - skip < core::mem::size_of::<T>() {
        return crate::TESSERA_BUFFER_TOO_SMALL;
    }
    // SAFETY: `skip` is within the caller's `len` bytes.
    let ptr = unsafe { (memory as *mut u8).add(skip) } as *mut MaybeUninit<T>;
    // SAFETY: aligned, and `size_of::<T>()` writable bytes remain that
    // nothing else uses, by the caller's promise; any bytes are a valid
    // `MaybeUninit`.
    if let Err(code) = init(unsafe { &mut *ptr }) {
        return code;
    }
    // SAFETY: `out` checked non-NULL by the caller of this helper.
    unsafe { out.write(ptr.cast()) };
    crate::TESSERA_OK
}

/// Takes the value out of a handle, wherever it lives; the handle is gone
/// (its caller memory may be reused).
///
/// # Safety
/// `ptr` must be a live handle made by [`new_handle`] or [`place_handle`]
/// (or their `_with` forms), not used again.
pub(crate) unsafe fn take_any<T: Placeable>(ptr: *mut T) -> T {
    // SAFETY: a live handle, by the caller.
    if unsafe { &*ptr }.on_heap() {
        #[cfg(feature = "std")]
        // SAFETY: made by `new_handle` (Box::into_raw), taken once.
        return unsafe { take_handle(ptr) };
    }
    // SAFETY: a live value in the caller's memory, read once; the caller
    // does not use or drop it again.
    unsafe { ptr.read() }
}

/// Frees a handle wherever it lives; NULL is a no-op.
///
/// # Safety
/// `ptr` must be NULL or a live handle made by [`new_handle`] or
/// [`place_handle`] (or their `_with` forms), not used again.
pub(crate) unsafe fn free_any<T: Placeable>(ptr: *mut T) {
    if ptr.is_null() {
        return;
    }
    // Dropped where it lies, not moved to the stack first.
    // SAFETY: a live handle, by the caller.
    if unsafe { &*ptr }.on_heap() {
        #[cfg(feature = "std")]
        {
            // SAFETY: made by `new_handle` (Box::into_raw), freed once.
            drop(unsafe { std::boxed::Box::from_raw(ptr) });
            return;
        }
    }
    // SAFETY: a live value in the caller's memory, dropped once; the caller
    // does not use it again.
    unsafe { core::ptr::drop_in_place(ptr) }
}

/// A handle's value with the state of the call on it. A call made while
/// another call on the same handle runs (from a callback that call made) is
/// refused with `TESSERA_IN_USE` instead of making a second reference to
/// the value; after a call that panicked, every call is refused with
/// `TESSERA_PANIC` (the value may be half updated) and only freeing
/// remains. Atomic loads and stores only: the targets without
/// compare-and-swap have them too.
pub(crate) struct Guarded<T> {
    call: AtomicU8,
    value: UnsafeCell<T>,
}

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const POISONED: u8 = 2;

/// Marks a handle poisoned when a call on it unwinds (disarmed on return).
struct PoisonOnUnwind<'a>(&'a AtomicU8);

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(POISONED, Ordering::Release);
    }
}

impl<T> Guarded<T> {
    pub(crate) const fn new(value: T) -> Self {
        Guarded {
            call: AtomicU8::new(IDLE),
            value: UnsafeCell::new(value),
        }
    }

    /// Makes a guarded value in `slot`, idle, with its value made in its
    /// place by `init`. When `init` keeps the promise of
    /// [`new_handle_with`] (it returns `Ok` only after writing the whole
    /// value, and on `Err` writes nothing that needs dropping), so does
    /// this call, which its callers rely on.
    pub(crate) fn init_in<E>(
        slot: &mut MaybeUninit<Self>,
        init: impl FnOnce(&mut MaybeUninit<T>) -> Result<(), E>,
    ) -> Result<(), E> {
        let p = slot.as_mut_ptr();
        // SAFETY: `value` is a field of the slot, its pointer made without
        // reading it; `UnsafeCell<T>` and `MaybeUninit<T>` both have the
        // layout of `T` (`repr(transparent)`), and any bytes are a valid
        // `MaybeUninit`; borrowed only for this call.
        let value = unsafe {
            &mut *UnsafeCell::raw_get(core::ptr::addr_of_mut!((*p).value).cast_const())
                .cast::<MaybeUninit<T>>()
        };
        init(value)?;
        // SAFETY: the other field of the slot, written once.
        unsafe { core::ptr::addr_of_mut!((*p).call).write(AtomicU8::new(IDLE)) };
        Ok(())
    }

    /// The value, out of its handle.
    pub(crate) fn into_inner(self) -> T {
        self.value.into_inner()
    }

    /// Whether a call on the handle runs now (on this thread, by the rules of
    /// the header: a callback of that call is running).
    pub(crate) fn is_busy(&self) -> bool {
        self.call.load(Ordering::Acquire) == BUSY
    }

    fn ready(&self) -> Result<(), tessera_result> {
        match self.call.load(Ordering::Acquire) {
            IDLE => Ok(()),
            BUSY => Err(crate::TESSERA_IN_USE),
            _ => Err(crate::TESSERA_PANIC),
        }
    }

    /// Runs `f` on the value, alone.
    ///
    /// # Safety
    /// No call on this handle runs on another thread now (the header's rule
    /// for a non-`const` handle).
    pub(crate) unsafe fn with_mut(
        &self,
        f: impl FnOnce(&mut T) -> tessera_result,
    ) -> tessera_result {
        if let Err(code) = self.ready() {
            return code;
        }
        self.call.store(BUSY, Ordering::Relaxed);
        let poison = PoisonOnUnwind(&self.call);
        // SAFETY: the handle was idle: no call on it runs on this thread,
        // and none on another one, by the caller; calls made from here on
        // (from callbacks) see BUSY and make no reference. So this is the
        // only reference to the value.
        let r = f(unsafe { &mut *self.value.get() });
        core::mem::forget(poison);
        self.call.store(IDLE, Ordering::Release);
        r
    }

    /// Runs `f` on the value, shared with other threads' `const` calls.
    ///
    /// # Safety
    /// No non-`const` call on this handle runs on another thread now (the
    /// header's rule for a `const` handle).
    pub(crate) unsafe fn with_ref(&self, f: impl FnOnce(&T) -> tessera_result) -> tessera_result {
        if let Err(code) = self.ready() {
            return code;
        }
        // SAFETY: no `&mut` to the value exists: none on another thread, by
        // the caller, and none on this one, whose call would be BUSY. The
        // library calls no callback during a shared call, so no `&mut` is
        // made while this one lives.
        f(unsafe { &*self.value.get() })
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::{TESSERA_IN_USE, TESSERA_OK, TESSERA_PANIC};

    #[test]
    fn a_call_from_inside_a_call_is_refused_and_a_panic_poisons() {
        let g = Guarded::new(1u32);
        // SAFETY (all calls): one thread.
        let r = unsafe {
            g.with_mut(|v| {
                *v += 1;
                let inner_mut = g.with_mut(|_| TESSERA_OK);
                let inner_ref = g.with_ref(|_| TESSERA_OK);
                assert!(g.is_busy());
                assert_eq!((inner_mut, inner_ref), (TESSERA_IN_USE, TESSERA_IN_USE));
                TESSERA_OK
            })
        };
        assert_eq!(r, TESSERA_OK);
        assert!(!g.is_busy());
        assert_eq!(unsafe { g.with_ref(|v| *v) }, 2);

        let r = guard(|| unsafe { g.with_mut(|_| panic!("a bug")) });
        assert_eq!(r, TESSERA_PANIC);
        assert_eq!(unsafe { g.with_mut(|_| TESSERA_OK) }, TESSERA_PANIC);
        assert_eq!(unsafe { g.with_ref(|_| TESSERA_OK) }, TESSERA_PANIC);
        assert!(!g.is_busy());
        assert_eq!(g.into_inner(), 2);
    }

    #[test]
    fn copy_out_writes_the_length_on_success_or_when_too_small_only() {
        let src = [1u8, 2, 3];
        let mut buf = [0u8; 8];
        let mut n = 99usize;
        // SAFETY (all calls): valid buffers, or NULL.
        let r = unsafe { copy_out(&src, core::ptr::null_mut(), buf.len(), &mut n) };
        assert_eq!((r, n), (crate::TESSERA_NULL_ARGUMENT, 99));
        let r = unsafe { copy_out(&src, buf.as_mut_ptr(), 2, &mut n) };
        assert_eq!((r, n, buf[0]), (crate::TESSERA_BUFFER_TOO_SMALL, 3, 0));
        let r = unsafe { copy_out(&src, buf.as_mut_ptr(), buf.len(), &mut n) };
        assert_eq!((r, n, &buf[..3]), (TESSERA_OK, 3, &src[..]));
    }
}

/// A struct the library fills that may grow in later versions: `#[repr(C)]`
/// with `size: usize` first, which the caller sets to the size of the
/// struct it has, so that a later library knows which fields that caller's
/// struct holds.
///
/// # Safety
/// Implementors are `#[repr(C)]` with a `usize` first field.
pub(crate) unsafe trait SizedOut: Sized {}

/// Whether the caller's struct at `out` is large enough for this version:
/// its `size` is at least `size_of::<T>()` (structs of earlier versions
/// would be filled up to their size; there are none yet).
///
/// # Safety
/// `out` non-NULL and readable for its first `usize`.
pub(crate) unsafe fn sized_ok<T: SizedOut>(out: *const T) -> bool {
    // SAFETY: by the trait, the first field is a usize; readable by the
    // caller's promise. Unaligned read: the caller's struct is only as
    // aligned as C made it.
    unsafe { (out as *const usize).read_unaligned() >= core::mem::size_of::<T>() }
}
